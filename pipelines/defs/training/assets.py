"""Training assets, one daily partition per test day T (train on the days before T-1, validate on
T-1, test on T):

training/examples (day D: impressions + labels + point-in-time features)
  -> training/<surface>/rankers     LambdaRank + value model, MLflow runs, `challenger` alias
  -> training/<surface>/evaluation  every ranker and baseline on T; blocking check
                                    `challenger_beats_champion`: the promotion gate (beat
                                    chronological and popularity, and the champion if any)
  -> training/<surface>/champion    moves the `champion` alias (skipped when the check fails)
  -> training/<surface>/ab_test     simulated online A/B of the champion vs chronological
                                    (skipped, with the reason, without simulator truth)

The value model's heads come from the log vocabulary (the `workspace` resource). A surface without
enough data is skipped, not failed: `rankers` yields no output, records an observation with metadata
`skipped` (the requests and positives found vs needed) and logs a warning; Dagster then skips that
surface's evaluation, champion and A/B, and the run stays green for the other surface.
"""

import json
from pathlib import Path

import dagster as dg

from data import columns as c
from features.tables import TABLES
from pipelines.defs.features.assets import REALTIME_KEY, REGISTRY_KEY, feature_key
from pipelines.defs.ingest.assets import lake_key
from pipelines.defs.training.resources import MlflowResource, TrainingConfigResource
from pipelines.partitions import day_partitions
from pipelines.resources import FeastResource, WorkspaceResource
from training import plots, tracking
from training.ab_test import simulate
from training.config import SURFACE_MODELS
from training.dataset import build_examples, with_features, write_examples
from training.errors import NotEnoughData, TrainingDataError
from training.evaluate import attach_truth, evaluate
from training.heads import ValueHeads, describe, value_heads
from training.models import VALUE_MODEL
from training.promotion import GATE_BASELINES, decide
from training.train import TrainedRankers, choose_challenger, load_split, train_rankers

GROUP = "training"
EXAMPLES_KEY = dg.AssetKey(["training", "examples"])
REPORTS_DIR = "training/reports"
SKIPPED = "skipped"  # metadata key of a surface's (or the A/B's) reason for not running


def _value_heads(workspace: WorkspaceResource, cfg) -> ValueHeads:
    """The vocabulary's heads with their configured weights (a config mistake fails the step)."""
    try:
        return value_heads(workspace.vocabulary(), cfg)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from exc


def _skip(context: dg.AssetExecutionContext, key: dg.AssetKey, reason: str):
    """No output (Dagster skips what depends on it); the reason in the log and on the asset."""
    context.log.warning(f"{key.to_user_string()} skipped: {reason}")
    yield dg.AssetObservation(asset_key=key, partition=context.partition_key, metadata={SKIPPED: reason})


@dg.asset(
    key=EXAMPLES_KEY,
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[REGISTRY_KEY, lake_key("impressions"), lake_key("engagements"), lake_key("posts"),
          *[feature_key(t) for t in TABLES.values()], REALTIME_KEY],
    kinds={"feast", "parquet"},
    description="One row per impression of the day (sampled requests per surface), labels from "
    "the engagements attributed to it, the configured feature service's features as of the request "
    "time (Feast): daily tables' snapshot of D-1, creation-stamped post_tags of D itself, real-time "
    "rows of D and D-1 (features/realtime).",
)
def training_examples(context: dg.AssetExecutionContext, feast: FeastResource, workspace: WorkspaceResource,
                      training_config: TrainingConfigResource) -> dg.MaterializeResult:
    day = context.partition_key
    cfg = training_config.load()
    heads = _value_heads(workspace, cfg)
    try:
        examples = with_features(feast.store(), build_examples(workspace.lake, day, cfg, heads), cfg.feature_service)
    except TrainingDataError as exc:
        raise dg.Failure(description=str(exc)) from exc
    path = write_examples(examples, workspace.lake, day)
    per_surface = examples.groupby(c.SURFACE).agg(rows=("grade", "size"), requests=(c.REQUEST_ID, "nunique"),
                                                   positive_rate=("grade", lambda g: float((g > 0).mean())))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(examples),
        "per_surface": dg.MetadataValue.json(per_surface.round(4).to_dict(orient="index")),
        "positives_per_head": dg.MetadataValue.json({h: int(examples[col].sum())
                                                     for h, col in zip(heads.names, heads.label_columns)}),
        "path": dg.MetadataValue.path(str(path)),
    })


def _run_notes(kind: str, trained: TrainedRankers) -> tuple[dict, dict]:
    """Extra MLflow params and tags of one ranker's run: the heads and weights the value model
    used, the heads it dropped and why, and the kinds that could not be trained."""
    params, tags = {}, {}
    if trained.failures:
        tags["not_trained"] = json.dumps(trained.failures)
    if kind == VALUE_MODEL:
        weights = trained.rankers[kind].weights
        params["value_model.heads"] = ",".join(weights)
        params.update({f"value_model.w_{h}": w for h, w in weights.items()})
        if trained.dropped_heads:
            tags["heads_dropped"] = json.dumps(trained.dropped_heads)
            params["value_model.heads_dropped"] = ",".join(trained.dropped_heads)
    return params, tags


def _report_path(workspace: WorkspaceResource, surface: str, day: str) -> Path:
    return workspace.lake / REPORTS_DIR / surface / f"{day}.json"


def build_surface_assets(surface: str):
    model_name = SURFACE_MODELS[surface]
    prefix = ["training", surface]
    rankers_key, evaluation_key = dg.AssetKey([*prefix, "rankers"]), dg.AssetKey([*prefix, "evaluation"])

    @dg.asset(key=rankers_key, group_name=GROUP, partitions_def=day_partitions, deps=[EXAMPLES_KEY],
              kinds={"lightgbm", "mlflow"}, output_required=False,
              description=f"{surface}: LambdaRank and per-action value model (heads of the log vocabulary "
              f"that have positives) trained on the days before T-1 with early stopping on T-1; the better on "
              f"T-1 is registered as {model_name}@challenger. Too little data: skipped, with the reason.")
    def rankers(context: dg.AssetExecutionContext, workspace: WorkspaceResource,
                training_config: TrainingConfigResource, mlflow: MlflowResource):
        cfg = training_config.load()
        heads = _value_heads(workspace, cfg)
        try:
            split = load_split(workspace.lake, surface, context.partition_key, cfg)
        except NotEnoughData as exc:
            yield from _skip(context, rankers_key, str(exc))
            return
        except TrainingDataError as exc:
            raise dg.Failure(description=str(exc)) from exc
        trained = train_rankers(split, cfg, heads)
        for head, why in trained.dropped_heads.items():
            context.log.warning(f"{surface}: value-model head {head!r} dropped: {why}")
        for kind, why in trained.failures.items():
            context.log.warning(f"{surface}: {kind} not trained: {why}")
        try:
            if not trained.rankers:
                failures = "; ".join(f"{k}: {w}" for k, w in trained.failures.items())
                raise NotEnoughData(f"no ranker could be trained: {failures}")
            kind, valid_ndcg = choose_challenger(trained.rankers, split.valid)
        except NotEnoughData as exc:
            yield from _skip(context, rankers_key, f"{surface}: {exc}")
            return
        client = mlflow.client()
        example = split.valid.head(50)
        run_ids = {}
        for k, r in trained.rankers.items():
            params, tags = _run_notes(k, trained)
            run_ids[k] = tracking.log_ranker_run(surface=surface, ranker=r, params={**cfg.params(), **params},
                                                 days=split.days, valid_ndcg10=valid_ndcg[k], input_example=example,
                                                 feature_service=cfg.feature_service, tags=tags)
        version = tracking.register(client, model_name, run_ids[kind],
                                    tags={"surface": surface, "kind": kind, "test_day": context.partition_key})
        value = {"surface": surface, "model_name": model_name, "run_ids": run_ids, "challenger_kind": kind,
                 "challenger_version": str(version.version), "days": split.days,
                 "valid_ndcg10": valid_ndcg, "train_rows": len(split.train),
                 "not_trained": trained.failures, "heads_dropped": trained.dropped_heads}
        metadata = {
            "challenger": f"{model_name} v{version.version} ({kind})",
            "valid_ndcg10_realised": dg.MetadataValue.json(valid_ndcg),
            "train_rows": len(split.train), "features": len(split.features),
            "days": dg.MetadataValue.json(split.days),
            "not_trained": dg.MetadataValue.json(trained.failures),
            "heads_dropped": dg.MetadataValue.json(trained.dropped_heads),
        }
        if VALUE_MODEL in trained.rankers:
            metadata["value_model_weights"] = describe(trained.rankers[VALUE_MODEL].weights)
        yield dg.Output(value, metadata=metadata)

    @dg.asset(key=evaluation_key, group_name=GROUP, partitions_def=day_partitions,
              ins={"trained": dg.AssetIn(rankers_key)}, kinds={"mlflow"},
              check_specs=[dg.AssetCheckSpec(
                  "challenger_beats_champion", asset=evaluation_key, blocking=True,
                  description="The promotion gate: the challenger takes `champion` only if, on the same test "
                  "day, it beats chronological order and popularity by [promotion] baseline_margin and the "
                  "current champion (if any) by min_improvement (metric in training/config.toml); never on a NaN.")],
              description=f"{surface}: every ranker and baseline (chronological, popularity, affinity, "
              "random, oracle) on the same candidates of test day T; logged to the rankers' MLflow runs.")
    def evaluation(context: dg.AssetExecutionContext, trained: dict, workspace: WorkspaceResource,
                   training_config: TrainingConfigResource, mlflow: MlflowResource):
        cfg = training_config.load()
        mlflow.client()
        split = load_split(workspace.lake, surface, context.partition_key, cfg)
        models = {kind: tracking.load_run_ranker(run_id) for kind, run_id in trained["run_ids"].items()}
        test = attach_truth(split.test, workspace.truth_model())
        report = evaluate(test, models, trained["challenger_kind"], seed=cfg.seed)
        report.update({k: trained[k] for k in ("challenger_kind", "challenger_version", "model_name", "days")})
        for kind, run_id in trained["run_ids"].items():
            figures = {"ndcg_vs_baselines.png": plots.ndcg_bars(report, f"{surface} NDCG@10, {context.partition_key}"),
                       "feature_importance.png": plots.feature_importance(models[kind])}
            if kind in report["heads"]:
                figures["calibration.png"] = plots.calibration_curves(report["heads"][kind])
            tracking.log_evaluation(run_id, report, kind, figures)
        path = _report_path(workspace, surface, context.partition_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=float))
        ours = report["rankers"][trained["challenger_kind"]]
        decision = _promotion_decision(context, report, split.test, workspace, cfg, mlflow.client())
        report["promotion"] = decision
        if not decision["promoted"] and decision["champion_version"] is None:
            context.log.warning(f"{model_name}: nothing promoted and no champion: the service keeps its "
                                f"heuristic ({decision['reason']})")
        yield dg.Output(report, metadata={
            "promotion": decision["reason"],
            "ndcg10": ours["ndcg10"], "ndcg10_realised": ours["ndcg10_realised"],
            "pct_of_oracle": report.get("pct_of_oracle", float("nan")),
            "lift_vs_chronological_pct": report["lift_vs_chronological_pct"],
            "ndcg10_all": dg.MetadataValue.json({n: round(m["ndcg10"], 4) for n, m in report["rankers"].items()}),
            "report": dg.MetadataValue.path(str(path)),
        })
        # Blocking: when it fails, Dagster skips the champion (and A/B) assets downstream.
        yield dg.AssetCheckResult(check_name="challenger_beats_champion", passed=decision["promoted"],
                                  metadata={k: (v if v is not None else "none") for k, v in decision.items()})

    @dg.asset(key=dg.AssetKey([*prefix, "champion"]), group_name=GROUP, partitions_def=day_partitions,
              ins={"evaluation": dg.AssetIn(evaluation_key)}, kinds={"mlflow"},
              description=f"Moves {model_name}@champion to the challenger; runs only when "
              "challenger_beats_champion passed.")
    def champion(evaluation: dict, mlflow: MlflowResource) -> dg.Output:
        client = mlflow.client()
        tracking.promote(client, model_name, evaluation["challenger_version"])
        value = {"model_name": model_name, "version": evaluation["challenger_version"],
                 "kind": evaluation["challenger_kind"], "test_day": evaluation["days"]["test"][0]}
        return dg.Output(value, metadata={"champion": f"{model_name} v{value['version']} ({value['kind']})"})

    @dg.asset(key=dg.AssetKey([*prefix, "ab_test"]), group_name=GROUP, partitions_def=day_partitions,
              ins={"champion": dg.AssetIn(dg.AssetKey([*prefix, "champion"]))}, kinds={"mlflow"},
              description="Simulated online A/B on test day T: viewers split between the champion and "
              "chronological order; expected engagements per session from the simulator's truth.")
    def ab_test(context: dg.AssetExecutionContext, champion: dict, workspace: WorkspaceResource,
                training_config: TrainingConfigResource, mlflow: MlflowResource) -> dg.Output:
        cfg = training_config.load()
        client = mlflow.client()
        loaded = None
        if workspace.truth is None or not (workspace.truth / "meta.json").exists():
            reason = "no simulator truth in this workspace (a team's own data): the simulated A/B needs it"
        elif (loaded := tracking.load_ranker(client, model_name, tracking.CHAMPION)) is None:
            reason = f"no {model_name}@{tracking.CHAMPION}"
        if loaded is None:
            context.log.info(f"{surface} A/B skipped: {reason}")
            return dg.Output({SKIPPED: reason}, metadata={SKIPPED: reason})
        ranker, version = loaded
        split = load_split(workspace.lake, surface, champion["test_day"], cfg)
        result = simulate(split.test, ranker.predict(ranker.matrix(split.test)), workspace.truth_model(),
                          slots=cfg.ab_slots, treatment_share=cfg.ab_treatment_share, seed=cfg.ab_seed)
        result.update(model_name=model_name, version=str(version.version), test_day=champion["test_day"])
        tracking.log_ab_test(result)
        return dg.Output(result, metadata={
            "engagement_lift_pct": result["engagements"]["lift_pct"],
            "ci95_pct": dg.MetadataValue.json(result["engagements"]["ci95_pct"]),
            "value_lift_pct": result["value"]["lift_pct"],
            "viewers": dg.MetadataValue.json(result["viewers"]),
        })

    def _promotion_decision(context, report: dict, test, workspace: WorkspaceResource, cfg, client) -> dict:
        """Score the current champion on the same test rows; decide; log the decision to MLflow."""
        test_day = report["days"]["test"][0]
        challenger_metric = report["rankers"][report["challenger_kind"]][cfg.promotion_metric]
        baselines = {b: report["rankers"][b][cfg.promotion_metric] for b in GATE_BASELINES}
        champion = tracking.load_ranker(client, model_name, tracking.CHAMPION)
        champion_version = champion_metric = None
        if champion is not None:
            ranker, version = champion
            champion_version = str(version.version)
            try:
                scored = evaluate(test, {"champion": ranker}, "champion")
                champion_metric = scored["rankers"]["champion"][cfg.promotion_metric]
            except TrainingDataError as exc:  # e.g. the champion needs a feature no longer served
                context.log.warning(f"champion v{champion_version} cannot score this test day: {exc}")
        decision = decide(metric=cfg.promotion_metric, test_day=test_day,
                          challenger_version=report["challenger_version"], challenger_metric=challenger_metric,
                          champion_version=champion_version, champion_metric=champion_metric,
                          baseline_metrics=baselines, baseline_margin=cfg.baseline_margin,
                          min_improvement=cfg.min_improvement).to_dict()
        tracking.log_decision(client, model_name, report["challenger_version"], decision)
        return decision

    return [rankers, evaluation, champion, ab_test]


training_assets = [training_examples]
for _surface in SURFACE_MODELS:
    training_assets += build_surface_assets(_surface)


def surface_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """What one run of `training_assets[1:]` did per surface: `{"skipped": why}` when the surface
    had too little data, else its evaluation report, promotion decision and A/B result (or why the
    A/B did not run), and what the rankers step trained (`trained`: run ids, heads dropped, kinds not
    trained). For callers of `dg.materialize` (make run, benchmarks)."""
    skipped = {}
    for event in result.get_asset_observation_events():
        observation = event.asset_observation_data.asset_observation
        if SKIPPED in observation.metadata:
            skipped[observation.asset_key.path[1]] = observation.metadata[SKIPPED].value
    out: dict[str, dict] = {}
    for surface in SURFACE_MODELS:
        node = f"training__{surface}__"
        if surface in skipped or not result.is_node_success(node + "rankers"):
            out[surface] = {SKIPPED: skipped.get(surface, "training did not run")}
            continue
        evaluation = result.output_for_node(node + "evaluation")  # stored even when the gate fails the step
        decision = evaluation["promotion"]
        ab = (result.output_for_node(node + "ab_test") if result.is_node_success(node + "ab_test")
              else {SKIPPED: "not promoted" if not decision["promoted"] else "the A/B did not run"})
        out[surface] = {"evaluation": evaluation, "decision": decision, "ab_test": ab,
                        "trained": result.output_for_node(node + "rankers")}
    return out
