"""Ingestion and a feature job on a real Spark standalone cluster (and over Spark Connect) write
exactly what local mode writes: same report counts, same quarantine reasons, same lake rows, same
relationship-strength features.

The cluster job runs in a child Python process: a classic SparkSession cannot switch master, and
the session-scoped local `spark` fixture may already be alive in this pytest process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from data.ingest.partition import ingest_partition
from data.spark_cluster import (
    connect_client_missing,
    kill_process_group,
    local_connect_server,
    local_standalone_cluster,
)
from features.jobs import relationship
from features.storage import write_feature_partition
from features.tables import RELATIONSHIP
from tests.builders import DAY, PREV_DAY, engagement, follow, post, user, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
STEPS = [(log, day) for day in (PREV_DAY, DAY) for log in ("users", "posts", "follows", "engagements")]
JOB_TIMEOUT_S = 300

# Runs in the child process: ingest every step through a session on `master` or `remote`.
JOB = """
import dataclasses, json, sys
from pathlib import Path
from data.spark import build_spark_session
from features.jobs import relationship
from features.storage import write_feature_partition
from features.tables import RELATIONSHIP
from data.ingest.partition import ingest_partition

args = json.loads(sys.argv[1])
spark = build_spark_session(master=args["master"], remote=args["remote"], driver_memory="1g",
                            app_name="loupe-slow-test", extra_conf=args["conf"])
try:
    reports = [dataclasses.asdict(ingest_partition(spark, log, day, Path(args["landing"]),
                                                   Path(args["lake"])))
               for log, day in args["steps"]]
    lake = Path(args["lake"])
    write_feature_partition(relationship.compute(spark, lake, args["features_day"]), lake,
                            RELATIONSHIP, args["features_day"])
    executors = None
    if not args["remote"]:
        assert spark.sparkContext.master == args["master"], spark.sparkContext.master
        executors = spark.sparkContext._jsc.sc().getExecutorIds().size()
finally:
    spark.stop()
Path(args["out"]).write_text(json.dumps({"reports": reports, "executors": executors}))
"""


# --- a small landing world, written by hand --------------------------------------------------


def build_landing(landing: Path) -> None:
    write_jsonl(landing, "users", PREV_DAY, [user(1), user(2), user(2), "{not json"])
    write_jsonl(landing, "users", DAY, [user(3, f"{DAY}T01:00:00.000Z"), user(4, is_private="maybe"),
                                        {"user_id": 5}])
    write_jsonl(landing, "posts", PREV_DAY, [post(100, 2), post(102, 1, media_type="hologram")])
    write_jsonl(landing, "posts", DAY, [
        post(101, 3, f"{DAY}T02:00:00.000Z"),
        post(100, 2, deleted_at=f"{DAY}T09:00:00.000Z"),
        post(103, 42, f"{DAY}T03:00:00.000Z"),  # unknown author
    ])
    write_jsonl(landing, "follows", PREV_DAY, [follow(1, 2, f"{PREV_DAY}T08:00:00.000Z"),
                                              follow(2, 1, f"{PREV_DAY}T09:00:00.000Z")])
    write_jsonl(landing, "follows", DAY, [follow(3, 2, f"{DAY}T08:00:00.000Z"),
                                         follow(1, 2, f"{DAY}T10:00:00.000Z", "unfollow")])
    write_jsonl(landing, "engagements", PREV_DAY, [engagement("e-old", ts=f"{PREV_DAY}T12:00:00.000Z")])
    first = [
        engagement("a"), engagement("a"),  # a copy within the file
        engagement("b", viewer=3, post_id=101, type="dwell", value=4200.0),
        engagement("e-old", ts=f"{PREV_DAY}T12:00:00.000Z"),  # re-sent from yesterday
        '{"event_id": "x1", "viewer_id": 1, "post_id"', "",
        engagement("x2", viewer=4.5), engagement("x3", type="superlike"),
        engagement("x4", ts="2026-10-09T00:00:00.000Z"), engagement("x5", post_id=999),
    ]
    write_jsonl(landing, "engagements", DAY, first)
    # A retried export: copies of rows from the first file, plus one new good and one bad row.
    retry = [engagement("a"), engagement("b", viewer=3, post_id=101, type="dwell", value=4200.0),
             engagement("c", viewer=2, surface="explore"), engagement("x6", viewer=77)]
    write_jsonl(landing, "engagements", DAY, retry, name="part-00001.jsonl")


# Spot checks, so that "cluster == local" cannot pass with both sides wrong in the same way.
EXPECTED_ENGAGEMENTS_TODAY = {
    "rows_read": 14, "rows_landed": 3, "duplicates_dropped": 4, "rows_quarantined": 7,
    "quarantined_by_reason": {"malformed_json": 2, "bad_type:viewer_id": 1, "bad_enum:type": 1,
                              "ts_in_future": 1, "unknown_reference:post_id": 1,
                              "unknown_reference:viewer_id": 1},
}


# --- comparing two runs ----------------------------------------------------------------------


def normalised(report: dict, lake_dir: Path) -> dict:
    out = dict(report)
    for name in ("lake_path", "quarantine_path", "id_map_path"):
        if report.get(name):
            out[name] = str(Path(report[name]).relative_to(lake_dir))
    return out


def lake_contents(lake_dir: Path) -> dict[str, list[str]]:
    """Every written partition (lake and quarantine) -> its rows, sorted, as text."""
    contents = {}
    for success in sorted(lake_dir.rglob("_SUCCESS")):
        table = pq.read_table(success.parent)
        rows = sorted(repr(tuple(r.values())) for r in table.to_pylist())
        contents[str(success.parent.relative_to(lake_dir))] = rows
    return contents


def run_job(workdir: Path, landing: Path, lake_dir: Path, master: str = "local[1]",
            remote: str | None = None, conf: dict | None = None) -> dict:
    out = workdir / "job.json"
    args = {"master": master, "remote": remote, "conf": conf or {}, "landing": str(landing),
            "lake": str(lake_dir), "steps": STEPS, "out": str(out), "features_day": DAY}
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOCAL_DIRS": str(workdir / "driver-local")}
    log = workdir / "job.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([sys.executable, "-c", JOB, json.dumps(args)], cwd=REPO, env=env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = "timeout"
        finally:  # the driver JVM is in the child's process group: never leave it behind
            kill_process_group(proc.pid)
            proc.wait()
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    assert code == 0, f"job failed ({code}):\n{tail}"
    return json.loads(out.read_text())


def spark_processes_under(workdir: Path) -> list[str]:
    """Processes started for `workdir` (by command line or working directory) still alive."""
    left = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(workdir) in cmdline or str(workdir) in (proc.info["cwd"] or ""):
            left.append(f"{proc.info['pid']}: {cmdline[:200]}")
    return left


@pytest.fixture(scope="module")
def local_result(tmp_path_factory, spark):
    """The same world ingested in local mode, in this process, by the shared local session."""
    root = tmp_path_factory.mktemp("spark-local")
    landing, lake_dir = root / "landing", root / "lake"
    build_landing(landing)
    reports = [dataclasses.asdict(ingest_partition(spark, log, day, landing, lake_dir))
               for log, day in STEPS]
    write_feature_partition(relationship.compute(spark, lake_dir, DAY), lake_dir, RELATIONSHIP, DAY)
    assert all(r["rows_read"] == r["rows_landed"] + r["rows_quarantined"] + r["duplicates_dropped"]
               for r in reports)
    today = reports[STEPS.index(("engagements", DAY))]
    assert {k: today[k] for k in EXPECTED_ENGAGEMENTS_TODAY} == EXPECTED_ENGAGEMENTS_TODAY
    return landing, lake_dir, [normalised(r, lake_dir) for r in reports], lake_contents(lake_dir)


def assert_same_as_local(local_result, reports: list[dict], lake_dir: Path) -> None:
    _, _, local_reports, local_rows = local_result
    assert [normalised(r, lake_dir) for r in reports] == local_reports
    rows = lake_contents(lake_dir)
    assert sorted(rows) == sorted(local_rows)
    assert len(rows) == 3 * len(STEPS) + 1  # a lake, a quarantine and an id-map partition per step + features
    assert any(p.startswith("features/viewer_author/") for p in rows)
    for partition, expected in local_rows.items():
        assert rows[partition] == expected, partition


# --- the tests -------------------------------------------------------------------------------


def test_ingest_on_a_standalone_cluster_matches_local_mode(tmp_path, local_result):
    landing = local_result[0]  # same landing files: source_file paths in quarantine rows match
    lake_dir, cluster_dir = tmp_path / "lake", tmp_path / "cluster"
    started = time.monotonic()
    with local_standalone_cluster(cluster_dir, cores=2, memory="1g") as url:
        assert url.startswith("spark://127.0.0.1:")
        result = run_job(tmp_path, landing, lake_dir, master=url, conf={
            "spark.executor.memory": "512m", "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",  # as the local fixture: tiny frames
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
        })
    elapsed = time.monotonic() - started

    assert not spark_processes_under(cluster_dir), "cluster processes left behind"
    # The tasks ran on the worker's executor, not in the driver.
    assert result["executors"] >= 1
    executor_logs = list((cluster_dir / "work").glob("app-*/*/stderr"))
    assert executor_logs and any("Finished task" in p.read_text(errors="replace") for p in executor_logs)
    assert_same_as_local(local_result, result["reports"], lake_dir)
    assert elapsed < JOB_TIMEOUT_S


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("spark-connect")
    with local_connect_server(workdir, master="local[2]") as url:
        yield url
    assert not spark_processes_under(workdir), "connect server left behind"


def test_the_connect_server_accepts_grpc_connections(connect_server):
    import grpc

    assert connect_server.startswith("sc://127.0.0.1:")
    channel = grpc.insecure_channel(connect_server.removeprefix("sc://"))
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
    finally:
        channel.close()


def test_ingest_over_spark_connect_matches_local_mode(tmp_path, connect_server, local_result):
    missing = connect_client_missing()
    if missing:
        pytest.skip(f"Spark Connect Python client needs {', '.join(missing)} (pyspark[connect])")
    lake_dir = tmp_path / "lake"
    result = run_job(tmp_path, local_result[0], lake_dir, remote=connect_server)
    assert_same_as_local(local_result, result["reports"], lake_dir)
