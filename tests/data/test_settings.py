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


def test_settings_made_in_code_ignore_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LOUPE_WORLD", "medium")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    s = Settings(home=tmp_path)
    assert (s.world, s.redis_url) == ("small", None)
    assert Settings.from_env().world == "medium"  # the environment is read by from_env


def test_a_variable_that_does_not_parse_is_named_in_the_error(tmp_path: Path):
    with pytest.raises(ValueError, match="LOUPE_SERVE"):
        Settings.from_env({"LOUPE_HOME": str(tmp_path), "LOUPE_SERVE": "maybe"})
    with pytest.raises(ValueError, match="LOUPE_SERVING_PORT"):
        Settings.from_env({"LOUPE_HOME": str(tmp_path), "LOUPE_SERVING_PORT": "31OO"})


def test_settings_survive_the_trip_through_the_environment(tmp_path: Path):
    s = Settings(home=tmp_path, landing=tmp_path / "export", source="landing", world="tiny", seed=3, serve=False,
                 redis_url="redis://cache:6379/0", serving_workers=4, now="2026-10-08T00:00:00Z")
    assert Settings.from_env(s.to_env()) == s
    assert s.with_(world="medium").world == "medium" and s.world == "tiny"
    with pytest.raises(ValueError, match="LOUPE_WORLD must be one of"):
        s.with_(world="huge")
