"""Off-policy evaluation of each surface's champion, per test day T, after `champion` moved:

training/<surface>/champion -> training/<surface>/ope
    logged:    champion vs chronological order, judged on the test day's pages that a randomised
               policy served (impressions with a propensity: the service's exploration share, an
               imported bandit log); IPS, SNIPS and DR with bootstrap CIs
    simulated: with the simulator's truth, the same lift from a simulated exploring log, next to
               the simulated A/B's confidence interval (the validation of the estimators)
Both go to MLflow (`loupe/ope`). Either part is skipped, with the reason in the metadata, when its
data is not there (no propensities logged; a team's data has no simulator truth).
"""

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from data import columns as c
from data import lake
from data.days import days_after
from pipelines.defs.ingest.assets import lake_key
from pipelines.defs.training.resources import MlflowResource, TrainingConfigResource
from pipelines.partitions import day_partitions
from pipelines.resources import WorkspaceResource
from training import tracking
from training.ab_test import simulate
from training.config import SURFACE_MODELS
from training.errors import TrainingDataError
from training.ope_tracking import log_ope
from training.ope_validation import logged_lift, simulated_lift
from training.train import load_split

GROUP = "training"


def logged_propensities(lake_dir, days: list[str]) -> pd.DataFrame:
    """(request_id, post_id, propensity) of the impressions that carry one, in these lake days."""
    none = pd.DataFrame({c.REQUEST_ID: pd.Series(dtype=object), c.POST_ID: pd.Series(dtype="int64"),
                         c.PROPENSITY: pd.Series(dtype="float64")})
    files = [str(f) for d in days for f in sorted(lake.partition_dir(lake_dir, "impressions", d).glob("*.parquet"))]
    if not files:
        return none
    dataset = ds.dataset(files, format="parquet")
    if c.PROPENSITY not in dataset.schema.names:
        return none
    table = dataset.to_table(columns=[c.REQUEST_ID, c.POST_ID, c.PROPENSITY], filter=ds.field(c.PROPENSITY).is_valid())
    return table.to_pandas().drop_duplicates([c.REQUEST_ID, c.POST_ID]) if table.num_rows else none


def engagement_reward(test: pd.DataFrame, negative_heads: set[str]) -> np.ndarray:
    """Positive engagements of each impression: the sum of its positive heads' labels."""
    columns = [col for col in test.columns if col.startswith("y_") and col[2:] not in negative_heads]
    return test[columns].to_numpy(np.float64).sum(axis=1) if columns else np.zeros(len(test))


def build_ope_asset(surface: str) -> dg.AssetsDefinition:
    model_name = SURFACE_MODELS[surface]
    key = dg.AssetKey(["training", surface, "ope"])

    @dg.asset(key=key, group_name=GROUP, partitions_def=day_partitions,
              deps=[dg.AssetKey(["training", surface, "champion"]), lake_key("impressions")], kinds={"mlflow"},
              description=f"{surface}: off-policy estimates (IPS, SNIPS, DR with CIs) of the champion's lift "
              "over chronological order on test day T, from logged propensities and, with simulator truth, "
              "from a simulated exploring log next to the simulated A/B; logged to MLflow loupe/ope.")
    def ope(context: dg.AssetExecutionContext, workspace: WorkspaceResource,
            training_config: TrainingConfigResource, mlflow: MlflowResource) -> dg.MaterializeResult:
        cfg = training_config.load()
        client = mlflow.client()
        day = context.partition_key
        loaded = tracking.load_ranker(client, model_name, tracking.CHAMPION)
        if loaded is None:
            return dg.MaterializeResult(metadata={"skipped": "no champion"})
        ranker, version = loaded
        try:
            split = load_split(workspace.lake, surface, day, cfg)
        except TrainingDataError as exc:
            return dg.MaterializeResult(metadata={"skipped": f"no test set: {exc}"})
        test = split.test
        scores = ranker.predict(ranker.matrix(test))
        result: dict = {"surface": surface, "model_name": model_name, "version": str(version.version),
                        "test_day": day}
        metadata: dict = {}

        vocabulary = workspace.vocabulary()
        negative = {vocabulary.engagement_types[n].head for n in vocabulary.names_with_role("negative")}
        logged = test.merge(logged_propensities(workspace.lake, [day, *_next(day)]),
                            on=[c.REQUEST_ID, c.POST_ID], how="left")
        try:
            result["logged"] = logged_lift(logged, scores, engagement_reward(logged, negative), seed=cfg.ab_seed)
            for name, e in result["logged"]["estimators"].items():
                metadata[f"logged_{name}_lift_pct"] = e["lift_pct"]
        except ValueError as exc:
            result["logged"] = {"skipped": str(exc)}
            metadata["logged"] = f"skipped: {exc}"

        model = workspace.truth_model()
        if model is not None:
            ab = simulate(test, scores, model, slots=cfg.ab_slots, treatment_share=cfg.ab_treatment_share,
                          seed=cfg.ab_seed)  # the ab_test asset's own draw: the same interval
            result["simulated"] = simulated_lift(test, scores, model, ab, slots=cfg.ab_slots, seed=cfg.ab_seed)
            metadata["ab_ci95_pct"] = dg.MetadataValue.json(result["simulated"]["ab_test"]["ci95_pct"])
            metadata["truth_lift_pct"] = result["simulated"]["truth_all_sessions"]["lift_pct"]
            metadata["ope_lift_pct_by_share"] = dg.MetadataValue.json({
                share: {n: round(e["lift_pct"], 2) for n, e in block["estimators"].items()}
                for share, block in result["simulated"]["by_share"].items()})
        else:
            result["simulated"] = None
            metadata["simulated"] = "skipped: no simulator truth (a team's own data)"
        metadata["mlflow_run"] = log_ope(result)
        return dg.MaterializeResult(metadata=metadata)

    return ope


def _next(day: str) -> list[str]:
    # late impressions of T land on T+1
    return [days_after(day, 1)]


ope_assets = [build_ope_asset(surface) for surface in SURFACE_MODELS]
