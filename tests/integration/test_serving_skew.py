"""Train/serve parity, end to end on the tiny world: the ranking service serves Home and Explore
(features from the Redis online store, a champion from the MLflow registry) and logs what it scored
into a landing folder; the real ingest lands that day in a lake; the Dagster check
`served_features_match_training` compares every logged vector with training retrieval (Feast
point-in-time) for the same rows. It passes as the code is, and fails when training's request time
is read with the old nanosecond assumption (`// 10**9` on the lake's microseconds: every post 0 h
old), naming the feature."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pytest

import features.retrieval
from data import lake
from pipelines.defs.ingest.ingest import ingest_partition
from pipelines.defs.training.assets import training_examples
from pipelines.defs.training.skew import CHECK_NAME, served_features_match_training
from pipelines.partitions import materialize_day
from pipelines.resources import WorkspaceResource, build_resources
from serving.app import RankingApp, wait_ready
from serving.config import ServingConfig
from tests.serving.test_ranking_service_tiny import platform  # noqa: F401 - the served tiny world

pytestmark = pytest.mark.spark
AGE = "request_features__post_age_hours_at_request"


def nanoseconds_assumed(ts: pd.Series) -> pd.Series:
    """The bug this check exists for: the raw int64 of the timestamp read as nanoseconds."""
    return pd.to_datetime(ts, utc=True).astype("int64") // 10**9


def served_lake(spark, platform_settings, landing, lake_dir, day: str) -> None:
    """The served day ingested by the real ingest into a lake of its own (the session's tiny lake
    is shared with other tests): the tiny world's users and posts partitions are linked in, the
    served day's users and posts are empty, its impressions are what the service logged."""
    shared = platform_settings.lake_dir
    for log in ("users", "posts"):
        for d in lake.partition_days(shared, log):
            target = lake.partition_dir(lake_dir, log, d)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(lake.partition_dir(shared, log, d), target_is_directory=True)
        lake.landing_day_dir(landing, log, day).mkdir(parents=True, exist_ok=True)
    for log in ("users", "posts", "impressions"):
        report = ingest_partition(spark, log, day, landing, lake_dir)
        assert report.reconciles and not report.rows_quarantined, report


def examples_and_check(resources: dict, day: str) -> dg.AssetCheckEvaluation:
    """The day's training examples and the skew check beside them, in one run as the training job
    runs them (Dagster runs a partitioned check with its asset, not alone)."""
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_day([training_examples, served_features_match_training], partition_key=day,
                                 instance=instance, resources=resources, raise_on_error=False)
    assert result.get_asset_materialization_events(), "training/examples did not materialize"
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == CHECK_NAME
    return evaluation


def test_served_vectors_match_training_retrieval_and_the_unit_bug_is_caught(platform, spark, tmp_path, monkeypatch):  # noqa: F811
    served, store, names, viewers, versions, next_day = platform
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    settings = replace(served, source="landing", landing=landing)  # the service logs here
    # The budget is not under test: on a busy machine a tight one hands pages to the heuristic,
    # which logs no vector. LightGBM serves at once (compiling is tested elsewhere).
    cfg = ServingConfig.load().with_("model", engine="lightgbm").with_("budget", total_ms=20_000.0,
                                                                        redis_timeout_ms=5_000.0)
    app = RankingApp.from_settings(settings, cfg)
    try:
        assert wait_ready(app, 180), app.models.status()
        pages = [app.feed("home", v, 10) for v in viewers[:15]] + [app.feed("explore", v, 10) for v in viewers[:5]]
        assert app.closers[0].flush()
    finally:
        app.close()
    scored = [p for p in pages if p["model_version"] != "heuristic" and p["items"]]
    assert len(scored) >= 15, [(p["model_version"], p["degraded_reasons"]) for p in pages]
    served_lake(spark, served, landing, lake_dir, next_day)

    resources = build_resources(settings, served.redis_url)
    resources["workspace"] = WorkspaceResource(landing_dir=str(landing), lake_dir=str(lake_dir))
    ok = examples_and_check(resources, next_day)
    meta = {k: v.value for k, v in ok.metadata.items()}
    assert ok.passed, (meta["failing_features"], meta["worst_examples"])
    assert meta["rows_compared"] == sum(len(p["items"]) for p in scored)
    assert set(meta["mismatch_rate_per_feature"]) == set(names)
    # the age the service scored is a real age (the world's posts are hours to days old)
    logged = pd.read_parquet(lake.partition_dir(lake_dir, "impressions", next_day))
    ages = np.array([f[names.index(AGE)] for f in logged["features"].dropna()])
    assert np.median(ages) > 1.0

    monkeypatch.setattr(features.retrieval, "epoch_seconds", nanoseconds_assumed)
    bad = examples_and_check(resources, next_day)
    meta = {k: v.value for k, v in bad.metadata.items()}
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert meta["failing_features"] == [AGE]
    assert meta["mismatch_rate_per_feature"][AGE] > 0.9
    assert all(w["training"] == 0.0 for w in meta["worst_examples"][AGE])
