"""The impression log writes served responses as valid `impressions` landing lines (the exact form
ingestion parses), into the serve day's folder, and never blocks or raises into the request path:
a stalled or failing disk costs counted drops, and the counters always reconcile."""

from __future__ import annotations

import json
import math
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from data import columns as c
from data.contracts import IMPRESSIONS
from data.days import iso_ms
from serving.impression_log import ImpressionLogWriter, append_all_or_nothing

DAY, NEXT_DAY = "2026-10-02", "2026-10-03"


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


TS = ms("2026-10-02T08:15:30.123")
TS_NEXT = ms("2026-10-03T00:00:00.005")

RANKED = dict(  # a model-ranked response, with missing features
    request_id="req-a",
    viewer_id=1002,
    surface="home",
    ts_ms=TS,
    post_ids=np.array([5001, 5002, 5003]),
    positions=np.array([0, 1, 2]),
    sources=["in_network", "embedding", "trending"],
    scores=np.array([0.87, 0.5, -1.25]),
    model_version="ranker-7",
    features=np.array([[0.1, np.nan, 3.0], [1e-7, -2.5, 0.0], [np.nan, np.nan, 123456.79]], np.float32),
    experiment="v2-home",  # routed by a live A/B: the viewer's arm goes with every line
    arm="treatment",
)
UNRANKED = dict(  # before any model: no scores, features or model version
    request_id="req-b",
    viewer_id=1003,
    surface="explore",
    ts_ms=TS,
    post_ids=[6001, 6002],
    positions=[0, 1],
    sources=["explore_popular", "explore_random"],
    scores=None,
    model_version=None,
    features=None,
)
NEXT = {  # served just past midnight UTC: the next day's folder
    **UNRANKED, "request_id": "req-c", "ts_ms": TS_NEXT, "post_ids": [7001], "positions": [0], "sources": ["popular"]
}


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def reconciles(w: ImpressionLogWriter) -> bool:
    s = w.stats()
    return s["logged_rows"] == s["written_rows"] + s["dropped_rows"] + s["queued_rows"]


@pytest.fixture
def writer(tmp_path):
    w = ImpressionLogWriter(tmp_path / "landing", "test", flush_interval_s=0.05)
    yield w
    w.close()


def test_responses_are_written_as_contract_lines_in_the_serve_days_folder(writer, tmp_path):
    for response in (RANKED, UNRANKED, NEXT):
        assert writer.log(**response)
    assert writer.flush()

    path = tmp_path / "landing" / "impressions" / DAY / f"test-{os.getpid()}.jsonl"
    assert writer.path_for(DAY) == path
    assert "NaN" not in path.read_text() and "nan" not in path.read_text()
    rows = read_rows(path)
    assert [list(r) for r in rows] == [IMPRESSIONS.column_names] * 5  # schema order
    ranked, unranked = rows[:3], rows[3:]

    assert [r[c.POST_ID] for r in ranked] == [5001, 5002, 5003]
    assert [r[c.POSITION] for r in ranked] == [0, 1, 2]
    assert [r[c.SOURCE] for r in ranked] == ["in_network", "embedding", "trending"]
    assert {(r[c.REQUEST_ID], r[c.VIEWER_ID], r[c.SURFACE], r[c.MODEL_VERSION], r[c.EXPERIMENT], r[c.ARM])
            for r in ranked} == {("req-a", 1002, "home", "ranker-7", "v2-home", "treatment")}
    assert {r[c.TS] for r in rows} == {"2026-10-02T08:15:30.123Z"}
    assert [r[c.SCORE] for r in ranked] == [0.87, 0.5, -1.25]
    # A missing feature is a JSON null inside the list; the rest is float32-exact.
    assert ranked[0][c.FEATURES] == [pytest.approx(0.1), None, 3.0]
    assert ranked[2][c.FEATURES][:2] == [None, None]
    got = np.array([[np.nan if v is None else v for v in r[c.FEATURES]] for r in ranked], np.float32)
    np.testing.assert_array_equal(got, RANKED["features"])

    assert [r[c.POST_ID] for r in unranked] == [6001, 6002]
    assert all(r[c.SCORE] is None and r[c.FEATURES] is None and r[c.MODEL_VERSION] is None for r in unranked)
    assert all(r[c.EXPERIMENT] is None and r[c.ARM] is None for r in unranked)

    next_rows = read_rows(writer.path_for(NEXT_DAY))
    assert [(r[c.REQUEST_ID], r[c.TS]) for r in next_rows] == [("req-c", "2026-10-03T00:00:00.005Z")]
    assert writer.stats() == {
        "logged_rows": 6, "written_rows": 6, "dropped_rows": 0, "queued_rows": 0,
        "write_errors": 0, "log_errors": 0,
    }


def test_appends_across_flushes_and_writers_of_the_same_process(tmp_path):
    for _ in range(2):
        with ImpressionLogWriter(tmp_path, "a") as w:
            w.log(**UNRANKED)
            w.flush()
            w.log(**UNRANKED)
    assert len(read_rows(w.path_for(DAY))) == 8


def test_ts_format_is_utc_with_milliseconds():
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(TS) == "2026-10-02T08:15:30.123Z"
    assert iso_ms(np.int64(TS_NEXT)) == "2026-10-03T00:00:00.005Z"


def test_a_stalled_writer_drops_whole_responses_without_blocking_and_counts_reconcile(tmp_path):
    release, stalled = threading.Event(), threading.Event()

    def blocked_append(path, data):
        stalled.set()
        release.wait(600)  # until the test releases it
        append_all_or_nothing(path, data)

    w = ImpressionLogWriter(tmp_path, "t", max_queue_rows=10, flush_interval_s=0.01, append=blocked_append)
    try:
        assert w.log(**RANKED)  # 3 rows: picked up, then stuck in the write
        assert stalled.wait(120)
        # every call returns while the disk write is stuck: logging never waits for the disk
        accepted = [w.log(**{**RANKED, "request_id": f"r{i}"}) for i in range(50)]
        assert accepted == [True, True] + [False] * 48  # 3 + 3 + 3 rows fit in 10; a 4th does not
        s = w.stats()
        assert (s["logged_rows"], s["dropped_rows"], s["written_rows"], s["queued_rows"]) == (153, 144, 0, 9)
        assert reconciles(w)

        release.set()
        assert w.flush()
        s = w.stats()
        assert (s["written_rows"], s["dropped_rows"], s["queued_rows"]) == (9, 144, 0)
        assert len(read_rows(w.path_for(DAY))) == 9
        assert w.log(**RANKED)  # room again once the writer caught up
    finally:
        release.set()
        w.close()
    assert reconciles(w) and w.written_rows == 12


def test_write_and_format_failures_are_counted_not_raised(writer):
    calls = []

    def failing_once(path, data):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        append_all_or_nothing(path, data)

    writer.append = failing_once
    writer.log(**RANKED)
    assert writer.flush()
    assert (writer.write_errors, writer.dropped_rows, writer.written_rows) == (1, 3, 0)

    # A response whose arrays disagree in length cannot be formatted: dropped, counted.
    assert writer.log(**{**RANKED, "positions": [0, 1]})
    writer.log(**UNRANKED)
    assert writer.flush()
    assert (writer.write_errors, writer.dropped_rows, writer.written_rows) == (2, 6, 2)
    assert [r[c.REQUEST_ID] for r in read_rows(writer.path_for(DAY))] == ["req-b", "req-b"]
    assert reconciles(writer)


def test_a_bad_log_call_never_raises(writer):
    assert writer.log(**{**UNRANKED, "post_ids": None}) is False  # len() fails: not even countable
    assert writer.log_errors == 1 and writer.logged_rows == 0
    assert writer.log(**{**UNRANKED, "post_ids": [], "positions": [], "sources": []})  # empty: fine
    assert writer.flush() and reconciles(writer)


def test_a_failed_append_leaves_no_half_line(tmp_path, monkeypatch):
    path = tmp_path / "f.jsonl"
    append_all_or_nothing(path, b'{"a":1}\n')
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)  # the disk fills up part-way through a write
    with pytest.raises(OSError):
        append_all_or_nothing(path, b'{"b":2}\n')
    monkeypatch.undo()
    assert path.read_bytes() == b'{"a":1}\n'


def test_close_is_idempotent_and_later_responses_are_dropped(tmp_path):
    w = ImpressionLogWriter(tmp_path)
    w.log(**UNRANKED)
    w.close()
    w.close()
    assert not w.writing and w.written_rows == 2
    assert w.log(**UNRANKED) is False and w.dropped_rows == 2
    assert w.flush(timeout_s=0.1) is False and reconciles(w)


def test_ingestion_parses_every_logged_line_as_valid_with_the_logged_values(spark, tmp_path):
    from pyspark.sql import functions as F

    from data.ingest.validation import LandingLines, parse_lines

    rng = np.random.default_rng(7)
    n, f = 40, 16
    x = (rng.normal(size=(n, f)) * 10.0 ** rng.integers(-8, 9, size=(n, f))).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    big = {
        **RANKED, "request_id": "req-big", "post_ids": np.arange(n) + 9000, "positions": np.arange(n),
        "sources": ["social"] * n, "scores": rng.normal(size=n), "features": x,
    }
    with ImpressionLogWriter(tmp_path / "landing", "spark") as w:
        for response in (RANKED, UNRANKED, big):
            w.log(**response)

    # Read exactly as ingestion does (data/ingest/partition.py).
    lines = LandingLines.of_file(spark.read.text(str(w.path_for(DAY))), str(w.path_for(DAY)), DAY)
    parsed = parse_lines(lines, IMPRESSIONS).withColumn("ts_ms", F.unix_millis(c.TS))
    rows = {(r[c.REQUEST_ID], r[c.POST_ID]): r for r in parsed.collect()}
    assert len(rows) == 3 + 2 + n
    assert {r[c.REASON] for r in rows.values()} == {None}

    for response in (RANKED, UNRANKED, big):
        for i, post_id in enumerate(response["post_ids"]):
            r = rows[(response["request_id"], int(post_id))]
            assert (r[c.VIEWER_ID], r[c.POSITION], r[c.SURFACE], r[c.SOURCE]) == (
                response["viewer_id"], response["positions"][i], response["surface"], response["sources"][i]
            )
            assert r["ts_ms"] == TS and r[c.MODEL_VERSION] == response["model_version"]
            assert (r[c.EXPERIMENT], r[c.ARM]) == (response.get("experiment"), response.get("arm"))
            if response["scores"] is None:
                assert r[c.SCORE] is None and r[c.FEATURES] is None
                continue
            assert r[c.SCORE] == response["scores"][i]  # double: exact
            # Spark keeps a JSON null inside the array as a null element; values are float32-exact.
            logged = response["features"][i]
            assert [v is None for v in r[c.FEATURES]] == list(np.isnan(logged))
            got = np.array([math.nan if v is None else v for v in r[c.FEATURES]], np.float32)
            np.testing.assert_array_equal(got, logged)
