"""Train/serve parity, end to end on the tiny world: the ranking service serves Home and Explore
(features from the Redis online store, a champion from the MLflow registry) and logs what it scored
into a landing folder; the real ingest lands that day in a lake; the Dagster check
`served_features_match_training` compares every logged vector with training retrieval (Feast
point-in-time) for the same rows. It passes as the code is, and fails when training's request time
is read with the old nanosecond assumption (`// 10**9` on the lake's microseconds: every post 0 h
old), naming the feature."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

import features.retrieval
from benchmarks.served_skew import examples_and_check, land_served_day, nanoseconds_assumed
from data import lake
from pipelines.defs.training.checks import CHECK_NAME
from pipelines.resources import WorkspaceResource, build_resources
from serving.app import RankingApp, wait_ready
from serving.config import ServingConfig
from serving.pipeline import drain_side_effects

AGE = "request_features__post_age_hours_at_request"


def served_lake(spark, platform_settings, landing, lake_dir, day: str) -> None:
    """The served day through the real ingest into a lake of its own (the session's tiny lake is
    shared with other tests); every log reconciles."""
    for report in land_served_day(spark, platform_settings.lake_dir, landing, lake_dir, day).values():
        assert report.reconciles and not report.rows_quarantined, report


def test_served_vectors_match_training_retrieval_and_the_unit_bug_is_caught(platform, spark, tmp_path, monkeypatch):
    served, store, names, viewers, versions, next_day = platform
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    settings = served.with_(source="landing", landing=landing)  # the service logs here
    # The budget is not under test: on a busy machine a tight one hands pages to the heuristic,
    # which logs no vector. LightGBM serves at once (compiling is tested elsewhere).
    cfg = ServingConfig.load().with_("model", engine="lightgbm").with_("budget", total_ms=20_000.0,
                                                                        redis_timeout_ms=5_000.0)
    app = RankingApp.from_settings(settings, cfg)
    try:
        assert wait_ready(app, 180), app.models.status()
        pages = [app.feed("home", v, 10) for v in viewers[:15]] + [app.feed("explore", v, 10) for v in viewers[:5]]
        assert drain_side_effects(timeout_s=600) and app.closers[0].flush()  # logged off the request thread
    finally:
        app.close()
    scored = [p for p in pages if p["model_version"] != "heuristic" and p["items"]]
    assert len(scored) >= 15, [(p["model_version"], p["degraded_reasons"]) for p in pages]
    served_lake(spark, served, landing, lake_dir, next_day)

    resources = build_resources(settings, served.redis_url)
    resources["workspace"] = WorkspaceResource(landing_dir=str(landing), lake_dir=str(lake_dir))
    ok = examples_and_check(resources, next_day)
    assert ok.check_name == CHECK_NAME
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
    assert bad.check_name == CHECK_NAME
    meta = {k: v.value for k, v in bad.metadata.items()}
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert meta["failing_features"] == [AGE]
    assert meta["mismatch_rate_per_feature"][AGE] > 0.9
    assert all(w["training"] == 0.0 for w in meta["worst_examples"][AGE])
