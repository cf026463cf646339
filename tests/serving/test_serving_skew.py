"""Train/serve parity, end to end on the tiny world: the ranking service serves Home and Explore
(features from the Redis online store, a champion from the MLflow registry) and logs what it scored
into a landing folder; the real ingest lands that day in a lake; the Dagster check
`served_features_match_training` compares every logged vector with training retrieval (Feast
point-in-time) for the same rows. It passes as the code is, and fails when training's request time
is read with the old nanosecond assumption (`// 10**9` on the lake's microseconds: every post 0 h
old), naming the feature. With a feed_ranker_v2 champion and the day before streamed through the
feature worker, the real-time features are compared too, and a backfill that lost engagements fails."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pandas as pd
import redis

import features.retrieval
from benchmarks.served_skew import examples_and_check, land_served_day, nanoseconds_assumed
from data import columns as c
from data import lake
from data.days import days_before, iso_ms
from data.redis_server import EmbeddedRedis
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from features.online.ranking import RankingFeatureReader
from features.services import REALTIME_VIEWS, SERVICE_V2
from features.streaming import backfill, spec
from features.streaming.worker import StreamFeatureWorker
from pipelines.defs.training.checks import CHECK_NAME
from pipelines.resources import WorkspaceResource, build_resources
from serving.app import RankingApp, wait_ready
from serving.config import ServingConfig
from serving.pipeline import drain_side_effects
from tests.serving.helpers import random_ranker, register_champion

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


def stream_day_into_the_online_store(store, redis_url: str, lake_dir, day: str, stream_dir) -> int:
    """The lake's engagements of `day` through the stream feature worker into the service's online
    store, in event-time order (appended per 10 minutes, at the end of each): the real-time rows a
    serving day starts with. -> engagements counted."""
    frame = lake.read_partitions(lake_dir, "engagements", [day], [c.EVENT_ID, c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID,
                                                                  c.TYPE, c.VALUE, c.TS, c.SURFACE])
    frame = frame.sort_values(c.TS)
    ms = (pd.to_datetime(frame[c.TS], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    with EmbeddedRedis(data_dir=stream_dir, durable=True) as server:
        stream = ValkeyStream.connect(server.url, partitions=2)
        for bucket, rows in frame.assign(_ms=ms).groupby(ms // 600_000, sort=True):
            events = [Event("engagements", json.dumps({**{k: row[k] for k in (c.EVENT_ID, c.VIEWER_ID, c.POST_ID,
                                                                                c.AUTHOR_ID, c.TYPE, c.SURFACE)},
                                                       c.VALUE: None if pd.isna(row[c.VALUE]) else row[c.VALUE],
                                                       c.TS: iso_ms(row["_ms"])}, default=int), str(row[c.VIEWER_ID]))
                      for row in rows.to_dict("records")]
            stream.append(events, at_ms=int((bucket + 1) * 600_000))
        worker = StreamFeatureWorker(stream, store, client=redis.Redis.from_url(redis_url), batch=2000)
        applied = 0
        while (polled := worker.poll()).entries:
            assert polled.reconciles and not polled.dead_lettered, polled
            applied += polled.applied
    return applied


def test_streaming_features_served_match_training_and_a_backfill_that_lost_likes_blocks(platform, spark, tmp_path,
                                                                                       monkeypatch):
    """feed_ranker_v2 end to end: the day before serving streams through the feature worker into the
    online store; a champion over v2's features serves, and the check compares every logged vector,
    the real-time features included, with training retrieval of the rows the features/realtime asset
    replays from the lake. Then a backfill that lost the likes (an export without them) fails the
    check on the like counts, which blocks the day's rankers."""
    served, store, _, viewers, _, next_day = platform
    day = days_before(next_day, 1)
    assert stream_day_into_the_online_store(store, served.redis_url, served.lake_dir, day, tmp_path / "stream") > 100
    names = RankingFeatureReader(store, SERVICE_V2, client=redis.Redis.from_url(served.redis_url)).feature_names
    register_champion(served.tracking_uri, tmp_path / "mlartifacts", "home", "feed_ranker", random_ranker(names),
                      SERVICE_V2)
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    settings = served.with_(source="landing", landing=landing)
    cfg = ServingConfig.load().with_("model", engine="lightgbm").with_("budget", total_ms=20_000.0,
                                                                        redis_timeout_ms=5_000.0)
    app = RankingApp.from_settings(settings, cfg)
    try:
        assert wait_ready(app, 180), app.models.status()
        pages = [app.feed("home", v, 10) for v in viewers[:20]]
        assert drain_side_effects(timeout_s=600) and app.closers[0].flush()
    finally:
        app.close()
    scored = [p for p in pages if p["model_version"].startswith("feed_ranker:") and p["items"]]
    assert len(scored) >= 15, [(p["model_version"], p["degraded_reasons"]) for p in pages]
    served_lake(spark, served, landing, lake_dir, next_day)
    target = lake.partition_dir(lake_dir, "engagements", day)  # the streamed day, as the lake holds it
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(lake.partition_dir(served.lake_dir, "engagements", day), target_is_directory=True)

    resources = build_resources(settings, served.redis_url)
    resources["workspace"] = WorkspaceResource(landing_dir=str(landing), lake_dir=str(lake_dir))
    ok = examples_and_check(resources, next_day)
    meta = {k: v.value for k, v in ok.metadata.items()}
    assert ok.passed, (meta["failing_features"], meta["worst_examples"])
    realtime = [n for n in names if n.split("__")[0] in REALTIME_VIEWS]
    assert set(realtime) <= set(meta["mismatch_rate_per_feature"])
    logged = pd.read_parquet(lake.partition_dir(lake_dir, "impressions", next_day))
    likes = f"{spec.POST_VIEW}__post_rt_like_24h"
    served_likes = np.array([f[names.index(likes)] for f in logged["features"].dropna()], dtype=np.float64)
    assert (served_likes > 0).sum() >= 10  # the streamed counts reached the scored vectors

    engagements_of = backfill.engagements_of
    monkeypatch.setattr(backfill, "engagements_of",
                        lambda lake_dir, d: (lambda f: f[f[c.TYPE] != "like"])(engagements_of(lake_dir, d)))
    bad = examples_and_check(resources, next_day)
    meta = {k: v.value for k, v in bad.metadata.items()}
    assert not bad.passed and likes in meta["failing_features"]
    assert all(f.split("__")[0] in REALTIME_VIEWS for f in meta["failing_features"])
