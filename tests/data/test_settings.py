from pathlib import Path

import pytest

from data.settings import Settings


def test_defaults_are_embedded_and_under_the_workspace(tmp_path: Path):
    s = Settings.from_env({"LOUPE_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert (s.world, s.serve, s.redis_url, s.spark_master) == ("small", True, None, "local[*]")
    assert s.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    # an empty workspace runs the simulated world, in a folder of its own
    assert s.source == "simulator" and s.landing_dir == s.world_dir / "landing" and s.lake_dir == s.home / "lake"


def test_environment_overrides_every_endpoint(tmp_path: Path):
    s = Settings.from_env(
        {
            "LOUPE_HOME": str(tmp_path),
            "LOUPE_WORLD": "tiny",
            "LOUPE_SERVE": "0",
            "REDIS_URL": "redis://cache:6379/0",
            "SPARK_REMOTE": "sc://spark:15002",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        }
    )
    assert (s.world, s.serve, s.redis_url, s.spark_remote) == (
        "tiny", False, "redis://cache:6379/0", "sc://spark:15002"
    )
    assert s.tracking_uri == "http://mlflow:5000"


def test_an_unknown_world_size_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ValueError, match="LOUPE_WORLD must be one of"):
        Settings.from_env({"LOUPE_HOME": str(tmp_path), "LOUPE_WORLD": "huge"})
