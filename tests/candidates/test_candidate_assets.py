"""The candidates Dagster assets on the tiny world: rebuild, a daily fan-out with its reconcile
check, trending and embeddings; then the sources answer from what the assets built."""

from __future__ import annotations

import dagster as dg
import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.explore.embeddings import load
from candidate_gen.reads import StepReader
from candidate_gen.rebuild import active_viewers
from candidate_gen.sources.base import OK, SourceRequest, run_sources
from candidate_gen.sources.embedding_source import EmbeddingSource
from candidate_gen.sources.in_network_source import InNetworkSource
from candidate_gen.sources.popular_source import PopularSource
from candidate_gen.sources.trending_source import TrendingSource
from data.days import day_end_ms
from pipelines.defs.candidates.assets import (
    candidates_embeddings,
    candidates_fanout,
    candidates_rebuild,
    candidates_trending,
)
from pipelines.partitions import materialize_day
from pipelines.resources import build_resources


def test_candidate_assets_build_state_the_sources_serve(tiny_lake, redis_server):
    settings, summary, _ = tiny_lake
    days = summary.days
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    resources = build_resources(settings, redis_server.url)
    with dg.DagsterInstance.ephemeral() as instance:
        rebuilt = materialize_day([candidates_rebuild], instance=instance, resources=resources,
                                 run_config={"ops": {"candidates__rebuild": {"config": {"day": days[-2]}}}})
        assert rebuilt.success
        daily = materialize_day([candidates_fanout, candidates_trending, candidates_embeddings],
                               partition_key=days[-1], instance=instance, resources=resources)
        assert daily.success
        checks = daily.get_asset_check_evaluations()
        assert [c.check_name for c in checks] == ["events_reconcile"] and checks[0].passed
        again = materialize_day([candidates_fanout], partition_key=days[-1], instance=instance, resources=resources)
        meta = again.get_asset_materialization_events()[0].materialization.metadata
        assert meta["applied"].value == 0  # a finished day is a no-op (checkpoint)

    cfg = CandidateConfig.load().with_timeouts(60_000)  # what they return, not how fast (busy CI)
    model = load(settings.home / "candidates" / "embeddings" / f"dt={days[-1]}")
    sources = [InNetworkSource(client, cfg), TrendingSource(cfg), EmbeddingSource(cfg, model), PopularSource(cfg)]
    now = day_end_ms(days[-1])
    viewers = active_viewers(settings.lake_dir, days[-1], 1)[:30]
    got = {s.name: 0 for s in sources}
    for v in map(int, viewers):
        for outcome in run_sources(sources, SourceRequest(v, now), StepReader(client)):
            assert outcome.status == OK, outcome
            got[outcome.name] += len(outcome.candidates)
    assert all(n > 0 for n in got.values()), got
    client.flushdb()


def test_a_daily_fanout_without_state_rebuilds_it_from_the_lake_first(tiny_lake, redis_server):
    """A fresh store (or one that lost its data): the day's fan-out rebuilds the state through the day
    before, then applies the day; the result equals the rebuild-then-fan-out path's."""
    settings, summary, _ = tiny_lake
    days = summary.days
    client = redis.Redis.from_url(redis_server.url)
    resources = build_resources(settings, redis_server.url)

    def state() -> dict[bytes, object]:
        """Every key's type and value."""
        read = {b"string": client.get, b"hash": client.hgetall, b"set": client.smembers,
                b"list": lambda k: client.lrange(k, 0, -1),
                b"zset": lambda k: client.zrange(k, 0, -1, withscores=True)}
        return {k: (client.type(k), read[client.type(k)](k)) for k in client.scan_iter(count=1000)}

    client.flushdb()
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize_day([candidates_rebuild], instance=instance, resources=resources,
                               run_config={"ops": {"candidates__rebuild": {"config": {"day": days[-2]}}}}).success
        assert materialize_day([candidates_fanout], partition_key=days[-1], instance=instance,
                               resources=resources).success
        expected = state()
        client.flushdb()
        fresh = materialize_day([candidates_fanout], partition_key=days[-1], instance=instance, resources=resources)
        assert fresh.success and fresh.get_asset_check_evaluations()[0].passed
        assert state() == expected
    client.flushdb()
