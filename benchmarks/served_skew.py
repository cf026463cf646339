"""The train/serve skew check measured on the medium world (bench-real's `train_serve_skew`).

The ranking service runs in-process on bench-serving's prepared state (candidates and the online
features of test day T, the champion bench-quality registered, LightGBM so it scores at once) with
its clock just after T, serves Home to bench-serving's viewers and logs what it scored (the exact
vectors) into a landing folder of its own. The real ingest lands that day in a scratch lake (the
medium lake's users and posts linked in), and the Dagster check `served_features_match_training`
compares every logged vector with training retrieval (Feast point in time) for the same rows:
mismatch rate per feature. Then again with the bug it exists for reintroduced (request time read
as nanoseconds: every post 0 h old), to show what a failing check reports.

The check compares features, not scores: when bench-quality has not registered a champion in the
medium workspace, a declared stand-in (a LightGBM value model over the same feature names, learnt on
random rows) is registered in a scratch registry so that the service scores and logs vectors.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

from data.days import days_after


def nanoseconds_assumed(ts: pd.Series) -> pd.Series:
    """The bug the check exists for: the raw int64 of the timestamp read as nanoseconds."""
    return pd.to_datetime(ts, utc=True).astype("int64") // 10**9


def land_served_day(spark, shared_lake: Path, landing: Path, lake_dir: Path, day: str) -> dict:
    """The served day ingested by the real ingest into a lake of its own: the shared lake's users
    and posts partitions linked in, the served day's users and posts empty, its impressions what the
    service logged into `landing`. The ingest report per log."""
    from data import lake
    from data.ingest.partition import ingest_partition

    for log in ("users", "posts"):
        for d in lake.partition_days(shared_lake, log):
            target = lake.partition_dir(lake_dir, log, d)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(lake.partition_dir(shared_lake, log, d), target_is_directory=True)
        lake.landing_day_dir(landing, log, day).mkdir(parents=True, exist_ok=True)
    return {log: ingest_partition(spark, log, day, landing, lake_dir) for log in ("users", "posts", "impressions")}


def examples_and_check(resources: dict, day: str):
    """The real-time rows of the day and the day before, then the day's training examples and the
    skew check beside them, in one run as the training job runs them (Dagster runs a partitioned
    check with its asset, not alone): the check's evaluation."""
    import dagster as dg

    from data.days import days_before
    from pipelines.defs.features.assets import realtime_rows
    from pipelines.defs.training.assets import training_examples
    from pipelines.defs.training.checks import served_features_match_training
    from pipelines.partitions import RANGE_END, RANGE_START, materialize_day, register_days

    with dg.DagsterInstance.ephemeral() as instance:
        register_days(instance, [days_before(day, 1), day])
        dg.materialize([realtime_rows], instance=instance, resources=resources,
                       tags={RANGE_START: days_before(day, 1), RANGE_END: day})
        result = materialize_day([training_examples, served_features_match_training], partition_key=day,
                                 instance=instance, resources=resources, raise_on_error=False)
    if not result.get_asset_materialization_events():
        raise RuntimeError(f"training/examples did not materialize for {day}")
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def _check(resources: dict, day: str) -> dict:
    evaluation = examples_and_check(resources, day)
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    rates = meta.get("mismatch_rate_per_feature", {})
    return {"passed": evaluation.passed, "severity": str(evaluation.severity),
            "rows_compared": meta.get("rows_compared"),
            "failing_features": meta.get("failing_features"), "tolerance": meta.get("tolerance"),
            "mismatch_rate_per_feature": {k: round(v, 4) for k, v in sorted(rates.items())},
            "max_mismatch_rate": round(max(rates.values()), 4) if rates else None}


def _champion_uri(medium_home: Path, feast_settings, scratch: Path, server_url: str, day: str) -> tuple[str, str]:
    """The tracking URI the service loads its Home champion from, and what that champion is."""
    import lightgbm as lgb
    import numpy as np
    import redis

    from features.online.ranking import RankingFeatureReader
    from features.store import feature_store
    from training import tracking
    from training.models import VALUE_MODEL, Ranker

    uri = f"sqlite:///{medium_home / 'mlflow.db'}"
    if tracking.version_by_alias(tracking.connect(uri), "feed_ranker", tracking.CHAMPION) is not None:
        return uri, "bench-quality's champion"
    uri = f"sqlite:///{scratch / 'mlflow.db'}"
    client = tracking.connect(uri, str(scratch / "mlartifacts"))
    store = feature_store(feast_settings, server_url)
    reader = RankingFeatureReader(store, client=redis.Redis.from_url(server_url))
    names = list(reader.feature_names)
    rng = np.random.default_rng(20261202)
    x = rng.normal(size=(5000, len(names))).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=len(x)) > 1).astype(int)
    booster = lgb.train({"objective": "binary", "num_leaves": 31, "verbose": -1, "num_threads": 1, "seed": 1},
                        lgb.Dataset(x, y), 100)
    ranker = Ranker(VALUE_MODEL, names, {"click": booster}, weights={"click": 1.0})
    example = pd.DataFrame(np.zeros((3, len(names)), dtype=np.float32), columns=names)
    run_id = tracking.log_ranker_run(surface="home", ranker=ranker, params={"stand_in": True}, days={"test": [day]},
                                     valid_ndcg10=0.0, input_example=example, feature_service=reader.service)
    version = tracking.register(client, "feed_ranker", run_id, {"stand_in": "true"})
    tracking.promote(client, "feed_ranker", version.version)
    return uri, ("a declared stand-in (no champion in the medium workspace): LightGBM value model, 100 trees, "
                 "over the online store's feature names, learnt on random rows")


def measure(requests: int = 150) -> dict:
    import features.retrieval
    from benchmarks.serving_state import STATE_FILE, VIEWERS_FILE, serving_workspace
    from benchmarks.workspace import bench_settings
    from data.redis_server import EmbeddedRedis
    from data.spark import build_spark_session
    from pipelines.resources import WorkspaceResource, build_resources
    from serving.app import RankingApp, wait_ready
    from serving.config import ServingConfig
    from serving.pipeline import drain_side_effects

    medium = bench_settings()
    workspace = serving_workspace(medium)
    if not (workspace.home / VIEWERS_FILE).exists():
        return {"skipped": "no bench-serving state: run make bench-serving (or bench-overload) first"}
    state = json.loads((workspace.home / STATE_FILE).read_text())
    test_day = state["test_day"]
    next_day = days_after(test_day, 1)
    scratch = workspace.home / "skew"
    shutil.rmtree(scratch, ignore_errors=True)
    landing, lake_dir = scratch / "landing", scratch / "lake"
    viewers = json.loads((workspace.home / VIEWERS_FILE).read_text())[:requests]
    start = time.perf_counter()
    scratch.mkdir(parents=True)
    with EmbeddedRedis(data_dir=workspace.redis_dir, persist=True) as server:
        feast_settings = workspace.with_(redis_url=server.url)
        tracking_uri, champion = _champion_uri(medium.home, feast_settings, scratch, server.url, test_day)
        server_settings = feast_settings.with_(mlflow_tracking_uri=tracking_uri,
                                  now=f"{next_day}T00:00:01Z", source="landing", landing=landing)
        # the budget is not under test: a page the heuristic ranks logs no vector to compare
        cfg = (ServingConfig.load().with_("model", engine="lightgbm")
               .with_("budget", total_ms=20_000.0, redis_timeout_ms=5_000.0)
               .with_("impressions", record_seen=False).with_("exploration", share=0.0))
        app = RankingApp.from_settings(server_settings, cfg)
        try:
            if not wait_ready(app, 600):
                return {"skipped": f"the service did not become ready: {app.models.status()}"}
            pages = [app.feed("home", v, 30) for v in viewers]
            drain_side_effects(timeout_s=120)  # every page handed to the impression writer
            app.closers[0].flush()
        finally:
            app.close()
        scored = [p for p in pages if p["model_version"] != "heuristic" and p["items"]]
        spark = build_spark_session(master="local[2]", driver_memory="4g", app_name="loupe-bench-skew")
        try:
            ingest = {log: report.__dict__ for log, report in
                      land_served_day(spark, medium.lake_dir, landing, lake_dir, next_day).items()}
        finally:
            spark.stop()
        resources = build_resources(server_settings, server.url)
        resources["workspace"] = WorkspaceResource(landing_dir=str(landing), lake_dir=str(lake_dir))
        as_is = _check(resources, next_day)
        original = features.retrieval.epoch_seconds
        features.retrieval.epoch_seconds = nanoseconds_assumed
        try:
            with_bug = _check(resources, next_day)
        finally:
            features.retrieval.epoch_seconds = original
    return {
        "world": medium.world, "served_day": next_day, "service": "in-process RankingApp, champion via "
        "LightGBM, bench-serving's online state; Home pages of 30",
        "champion": champion,
        "requests": len(pages), "pages_scored_by_the_champion": len(scored),
        "impressions_logged": sum(len(p["items"]) for p in pages),
        "impressions_ingested": {log: {k: v for k, v in r.items() if k.startswith("rows")}
                                 for log, r in ingest.items()},
        "check_as_shipped": as_is,
        "check_with_the_age_unit_bug": with_bug,
        "wall_s": round(time.perf_counter() - start, 1),
    }
