"""Throwaway Spark services on 127.0.0.1, started from the pip-installed pyspark distribution.

`local_standalone_cluster(workdir)` runs a real standalone master and one worker (separate JVMs,
executors launched by the worker), so a job can be run the way it runs on a cluster:
`build_spark_session(master=url)`. `local_connect_server(workdir)` runs a Spark Connect server for
`build_spark_session(remote=url)`. Both choose free ports, keep logs and scratch dirs under
`workdir`, and stop their processes (whole process groups: executors too) when the block exits,
even when it raises. Used by the slow tests; handy for trying a cluster by hand too.

The pyspark wheel ships bin/spark-class, bin/spark-submit and all jars (spark-connect included) but
not sbin/start-master.sh / start-worker.sh, so the daemons are launched through spark-class.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from data.settings import subprocess_env

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0

_MASTER_PORT = re.compile(r"Successfully started service 'sparkMaster' on port (\d+)")
_MASTER_UI_PORT = re.compile(r"Successfully started service 'MasterUI' on port (\d+)")
_CONNECT_STARTED = re.compile(r"Spark Connect server started at: \S+:(\d+)")


class SparkServiceError(RuntimeError):
    """A Spark daemon that did not come up; the message carries the tail of its log."""


def spark_home() -> Path:
    """The installed pyspark package: the same Spark version the driver uses."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").is_file():
        raise SparkServiceError(f"no bin/spark-class in {home}: not a usable Spark distribution")
    return home


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _base_env(workdir: Path) -> dict[str, str]:
    conf_dir = workdir / "conf"  # empty: nothing from a stray spark-defaults.conf leaks in
    local_dir = workdir / "local"
    for folder in (conf_dir, local_dir, workdir / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    env = subprocess_env(dict(
        SPARK_HOME=str(spark_home()),
        SPARK_CONF_DIR=str(conf_dir),
        SPARK_LOCAL_IP=HOST,
        SPARK_LOCAL_HOSTNAME=HOST,
        SPARK_LOCAL_DIRS=str(local_dir),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    ))
    env.pop("SPARK_ENV_LOADED", None)
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Daemon:
    """One Spark JVM in its own process group, its stdout and stderr in one log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path):
        self.name, self.log = name, log
        self._handle = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise SparkServiceError(
                f"{self.name} exited with {self.proc.returncode}; log {self.log}:\n{_tail(self.log)}"
            )

    def wait_for(self, pattern: re.Pattern[str], deadline: float) -> re.Match[str]:
        while True:
            found = pattern.search(self.log_text())
            if found:
                return found
            self.check_alive()
            if time.monotonic() > deadline:
                raise SparkServiceError(
                    f"{self.name} not up after {START_TIMEOUT_S:.0f}s; log {self.log}:\n{_tail(self.log)}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM the group (the JVM's shutdown hooks stop executors), then SIGKILL what is left."""
        try:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            kill_process_group(self.proc.pid)
        finally:
            self._handle.close()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_process_group(pgid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGKILL a process group until none of it is left (children may outlive their leader)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        _signal_group(pgid, signal.SIGKILL)
        time.sleep(0.1)


def _master_state(ui_port: int) -> dict:
    with urllib.request.urlopen(f"http://{HOST}:{ui_port}/json/", timeout=5) as response:
        return json.load(response)


@contextmanager
def local_standalone_cluster(
    workdir: Path, cores: int = 1, memory: str = "1g", daemon_memory: str = "512m"
) -> Iterator[str]:
    """A standalone master and one worker (`cores`, `memory` for executors); yields spark://host:port.

    Returns once the worker has registered with the master, so an application submitted right
    away gets an executor. Logs: workdir/logs/{master,worker}.log; executor logs and application
    files: workdir/work/<app-id>/<executor-id>/.
    """
    workdir = Path(workdir)
    env = _base_env(workdir)
    env["SPARK_DAEMON_MEMORY"] = daemon_memory
    # No REST submission server: it would want the fixed port 6066.
    env["SPARK_MASTER_OPTS"] = "-Dspark.master.rest.enabled=false"
    env["SPARK_WORKER_OPTS"] = "-Dspark.worker.cleanup.enabled=false"
    spark_class = str(spark_home() / "bin" / "spark-class")
    work = workdir / "work"
    work.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + START_TIMEOUT_S

    with ExitStack() as stack:
        master = _Daemon(
            "spark master",
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
             "--port", str(free_port()), "--webui-port", str(free_port())],
            env, workdir / "logs" / "master.log",
        )
        stack.callback(master.stop)
        # Ports as bound (Spark moves to port+1 if a chosen port was taken in the meantime).
        port = int(master.wait_for(_MASTER_PORT, deadline).group(1))
        ui_port = int(master.wait_for(_MASTER_UI_PORT, deadline).group(1))
        url = f"spark://{HOST}:{port}"

        worker = _Daemon(
            "spark worker",
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", HOST,
             "--webui-port", "0", "--cores", str(cores), "--memory", memory,
             "--work-dir", str(work), url],
            env, workdir / "logs" / "worker.log",
        )
        stack.callback(worker.stop)  # stopped before the master (callbacks run last-in first-out)
        while True:
            master.check_alive()
            worker.check_alive()
            try:
                state = _master_state(ui_port)
                if state.get("status") == "ALIVE" and state.get("aliveworkers", 0) >= 1:
                    break
            except (OSError, ValueError):  # not up yet; a UI just bound serves its HTML page at /json/ at first
                pass
            if time.monotonic() > deadline:
                raise SparkServiceError(
                    f"no worker registered after {START_TIMEOUT_S:.0f}s; worker log:\n"
                    f"{_tail(worker.log)}"
                )
            time.sleep(0.25)
        yield url


@contextmanager
def local_connect_server(
    workdir: Path,
    master: str = "local[1]",
    driver_memory: str = "1g",
    conf: dict[str, str] | None = None,
) -> Iterator[str]:
    """A Spark Connect server whose driver runs `master`; yields sc://127.0.0.1:<port>.

    The server ships in the pyspark wheel (jars/spark-connect_*.jar). The Python client
    (`build_spark_session(remote=...)`) additionally needs pyspark's `connect` extra:
    grpcio-status, googleapis-common-protos and zstandard (see `connect_client_missing`).
    """
    workdir = Path(workdir)
    env = _base_env(workdir)
    settings = {
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(free_port()),
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        **(conf or {}),
    }
    cmd = [str(spark_home() / "bin" / "spark-submit"),
           "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
           "--name", "loupe-connect", "--master", master, "--driver-memory", driver_memory]
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd.append("spark-internal")
    with ExitStack() as stack:
        server = _Daemon("spark connect server", cmd, env, workdir / "logs" / "connect.log")
        stack.callback(server.stop)
        port = int(server.wait_for(_CONNECT_STARTED, time.monotonic() + START_TIMEOUT_S).group(1))
        yield f"sc://{HOST}:{port}"


def connect_client_missing() -> list[str]:
    """Python packages the Spark Connect client needs that are not installed (empty: ready)."""
    from importlib.util import find_spec

    needed = {"grpc": "grpcio", "grpc_status": "grpcio-status",
              "google.rpc": "googleapis-common-protos", "zstandard": "zstandard"}
    missing = []
    for module, package in needed.items():
        try:
            found = find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(package)
    return missing
