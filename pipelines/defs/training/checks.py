"""Train/serve parity, checked where it guards training: a blocking check on `training/examples`.

For the day's impressions the ranking service scored and logged (with the exact feature vectors),
training retrieval is asked for the same (viewer, author, post, request time); a feature that
differs on more rows than `max_mismatch_rate` (training/skew.toml) fails the check, and Dagster
then skips the rankers of that day: a model is never trained on features that are not the ones it
will be served. A day without model-scored impressions (the simulator's logging policy, a team's
export before Loupe served it) passes, saying there was nothing to compare.
"""

import warnings

import dagster as dg

from pipelines.defs.features.assets import REALTIME_KEY, REGISTRY_KEY
from pipelines.defs.ingest.assets import lake_key
from pipelines.defs.training.assets import EXAMPLES_KEY
from pipelines.defs.training.resources import MlflowResource
from pipelines.partitions import day_partitions
from pipelines.resources import FeastResource, WorkspaceResource
from training.skew import SkewConfig, check_day, registry_feature_names

CHECK_NAME = "served_features_match_training"


class SkewCheckConfig(dg.Config):
    path: str = ""  # a skew config file; empty = training/skew.toml


# Partitioned asset checks are a Dagster preview; the check must follow the examples' partitions.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec",
                        category=dg.PreviewWarning)


@dg.asset_check(
    asset=EXAMPLES_KEY,
    name=CHECK_NAME,
    blocking=True,
    partitions_def=day_partitions,
    additional_deps=[lake_key("impressions"), lake_key("posts"), REGISTRY_KEY, REALTIME_KEY],
    # In the run that builds the training set it guards (pipelines/automation.py): a check of its own
    # op is not run with its asset unless asked for, and the rankers wait on it (blocking).
    automation_condition=dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.will_be_requested()).allow(dg.AssetSelection.assets(EXAMPLES_KEY)),
    description="The feature vectors the ranking service scored on this day (logged with its "
    "impressions) equal what training retrieval (Feast point-in-time) returns for the same rows: "
    "per-feature mismatch rate within training/skew.toml's tolerance, else the day's rankers wait.",
)
def served_features_match_training(context: dg.AssetCheckExecutionContext, config: SkewCheckConfig,
                                   feast: FeastResource, workspace: WorkspaceResource,
                                   mlflow: MlflowResource) -> dg.AssetCheckResult:
    cfg = SkewConfig.load(config.path or None)
    day = context.partition_key
    report = check_day(workspace.lake, day, feast.store(), registry_feature_names(mlflow.client()), cfg,
                       clock_speed=workspace.clock_speed_of(day))
    context.log.info(report.summary())
    mismatching = {n: f for n, f in report.features.items() if f.mismatches}
    return dg.AssetCheckResult(
        passed=report.passed,
        description=report.summary(),
        metadata={
            "rows_compared": report.rows,
            "requests_compared": report.requests,
            "scored_rows_of_the_day": report.scored_rows,
            "rows_skipped": dg.MetadataValue.json(report.skipped),
            "max_mismatch_rate": cfg.max_mismatch_rate,
            "stream_delay_s": report.stream_delay_s,
            "delayed_rate_per_feature": dg.MetadataValue.json(report.delayed_rates),
            "failing_features": dg.MetadataValue.json(report.failing),
            "mismatch_rate_per_feature": dg.MetadataValue.json(report.mismatch_rates),
            "worst_examples": dg.MetadataValue.json(
                {n: f.worst for n, f in sorted(mismatching.items(), key=lambda kv: -kv[1].rate)[:10]}),
        },
    )
