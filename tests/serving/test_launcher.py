"""serving.launcher: the service's environment comes from Settings; waiting on /readyz returns once it
answers 200, and a service that exits first is reported at once, with the end of its log."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from data.settings import Settings
from serving.launcher import ServiceProcess, service_env


def test_the_service_environment_comes_from_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_FEAST_REGISTRY", str(tmp_path / "another" / "registry.db"))
    monkeypatch.setenv("LOUPE_NOW", "2020-01-01T00:00:00Z")
    monkeypatch.setenv("LOUPE_LANDING", str(tmp_path / "someone_elses_export"))
    monkeypatch.setenv("LOUPE_SOURCE", "landing")
    settings = Settings(home=tmp_path, redis_url="redis://127.0.0.1:1/0", now="2026-10-08T00:00:00Z",
                        serving_config=tmp_path / "serving.toml")
    env = service_env(settings)
    assert env["LOUPE_HOME"] == str(tmp_path) and env["REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert env["LOUPE_NOW"] == "2026-10-08T00:00:00Z"
    assert env["LOUPE_SERVING_CONFIG"] == str(tmp_path / "serving.toml")
    assert "LOUPE_FEAST_REGISTRY" not in env  # the workspace's own registry, not this process's
    # nothing of this process's settings is inherited: the service reads exactly `settings`
    assert "LOUPE_LANDING" not in env and env["LOUPE_SOURCE"] == "simulator"
    assert Settings.from_env(env) == settings.with_(redis_url="redis://127.0.0.1:1/0",
                                                     mlflow_tracking_uri=settings.tracking_uri)


def test_waiting_returns_once_readyz_answers(tmp_path):
    (tmp_path / "readyz").write_text("ok")  # a file server answers GET /readyz with 200
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                "--directory", str(tmp_path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", None)
    try:
        assert service.wait_ready(timeout_s=60) < 60
    finally:
        service.stop()
    assert process.poll() is not None


def test_a_service_that_exits_is_reported_with_its_log(tmp_path):
    log = tmp_path / "service.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", "print('no champion here'); raise SystemExit(3)"],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    service = ServiceProcess(process, "http://127.0.0.1:9", log)
    with pytest.raises(RuntimeError, match=r"exited \(3\) before it was ready:\s+no champion here"):
        service.wait_ready(timeout_s=60)
