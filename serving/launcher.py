"""Start the ranking service in a child process (`bentoml serve`) and wait until it is ready.

`make run` (pipelines/run.py) and the serving benchmarks start it here. The service reads its
workspace from the environment (data/settings.py), so the child's environment is this process's with
the service's variables taken from the given `Settings`. Ready means /readyz answers 200: the
champions are resolved (compiled, when configured so) and every pipeline has run once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from data.settings import REPO_ROOT, Settings, child_env, serving_secrets

# Compiling a champion on a busy 2-core machine takes minutes; a service that exits is reported at once.
READY_TIMEOUT_S = 900.0
def serve_command(port: int) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", "serving.service:RankingService",
            "--host", "127.0.0.1", "--port", str(port)]


def service_env(settings: Settings) -> dict[str, str]:
    """This process's environment with every variable `Settings` reads taken from `settings` (so the
    service runs on exactly these settings, none inherited), Redis and MLflow at their resolved
    endpoints (the embedded server's URL, the workspace's registry)."""
    return child_env(settings, REDIS_URL=settings.redis_endpoint, MLFLOW_TRACKING_URI=settings.tracking_uri)


@dataclass
class ServiceProcess:
    """A ranking service started by `start_ranking_service`, in its own process group (BentoML's
    arbiter and its workers are stopped together)."""

    process: subprocess.Popen
    url: str
    log: Path | None  # where its output goes; None: this process's console

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Seconds until /readyz answered 200. A service that exits first, or is not ready by the
        deadline, is stopped and reported with the end of its log."""
        start = time.monotonic()
        while self.process.poll() is None and time.monotonic() - start < timeout_s:
            if self._answers_ready():
                return round(time.monotonic() - start, 1)
            time.sleep(0.5)
        code = self.process.poll()
        where = f"{self.url}, log {self.log}" if self.log else self.url
        tail = self.log_tail()
        self.stop()
        if code is not None:
            raise RuntimeError(f"the ranking service ({where}) exited ({code}) before it was ready:\n{tail}")
        raise TimeoutError(f"the ranking service ({where}) was not ready after {timeout_s:.0f} s:\n{tail}")

    def _answers_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:  # not listening yet, or not ready (503)
            return False

    def log_tail(self, lines: int = 60) -> str:
        if self.log is None:
            return "(its output is above)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM to the process group (the service drains its side effects), SIGKILL after
        `timeout_s`."""
        stop_process_group(self.process, timeout_s)


def start_process_group(command: list[str], env: dict[str, str] | None, log: Path | None) -> subprocess.Popen:
    """`command` as the leader of a process group of its own (so `stop_process_group` reaches every
    process it starts: bentoml's workers, MLflow's job runners), its output to `log` (None: this
    console)."""
    if log is None:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, start_new_session=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_process_group(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM to `process`'s group, SIGKILL after `timeout_s`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def start_ranking_service(settings: Settings, port: int, log: Path | None = None) -> ServiceProcess:
    """`bentoml serve` the ranking service on 127.0.0.1:`port` over `settings`' workspace (its home,
    Redis, MLflow registry, clock, serving config and Feast registry), output to `log` (None: this
    console). Its API token and cursor secret are put in the workspace first if absent. Returns at
    once: `wait_ready()` before sending requests."""
    serving_secrets(settings)
    process = start_process_group(serve_command(port), service_env(settings), log)
    return ServiceProcess(process, f"http://127.0.0.1:{port}", log)
