"""Each class of bad input, built by hand, ends in quarantine with the right reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from data import lake
from data.ingest.partition import IngestError, ingest_partition
from tests.builders import DAY, PREV_DAY, engagement, post, user, write_jsonl


@pytest.fixture
def world(tmp_path: Path):
    """Two landed days of users and posts, one earlier engagement: what references resolve to."""
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    for day in (PREV_DAY, DAY):
        write_jsonl(landing, "users", day, [user(1), user(2)] if day == PREV_DAY else [user(3, f"{DAY}T01:00:00.000Z")])
        posts = [post(100, 2)] if day == PREV_DAY else [post(101, 3, f"{DAY}T02:00:00.000Z")]
        write_jsonl(landing, "posts", day, posts)
    write_jsonl(landing, "engagements", PREV_DAY, [engagement("e-old", ts=f"{PREV_DAY}T12:00:00.000Z")])
    return landing, lake_dir


def ingest_days(spark, landing, lake_dir, logs=("users", "posts"), days=(PREV_DAY, DAY)):
    return {(log, d): ingest_partition(spark, log, d, landing, lake_dir) for d in days for log in logs}


BAD_CASES = [
    ('{"event_id": "e1", "viewer_id": 1, "post_id"', "malformed_json"),
    ("", "malformed_json"),
    ("[1, 2, 3]", "malformed_json"),
    (engagement("e2", viewer=None), "missing_required:viewer_id"),
    ({k: v for k, v in engagement("e3").items() if k != "ts"}, "missing_required:ts"),
    (engagement("e4", viewer=4.5), "bad_type:viewer_id"),  # a string id is valid; a fraction is not
    (engagement("e4b", post_id=True), "bad_type:post_id"),
    (engagement("e4c", post_id=""), "bad_type:post_id"),
    (engagement("e5", value="long"), "bad_type:value"),
    (engagement("e6", ts="yesterday"), "bad_type:ts"),
    (engagement("e7", type="superlike"), "bad_enum:type"),
    (engagement("e8", surface="reels"), "bad_enum:surface"),
    (engagement("e9", ts="2026-10-09T00:00:00.000Z"), "ts_in_future"),
    (engagement("e10", ts="2026-09-01T00:00:00.000Z"), "ts_too_old"),
    (engagement("e11", post_id=999), "unknown_reference:post_id"),
    (engagement("e12", viewer=77), "unknown_reference:viewer_id"),
    (engagement("e13", viewer="abc"), "unknown_reference:viewer_id"),  # a string id no user has
]


def test_each_bad_input_class_is_quarantined_with_its_reason(spark, world):
    landing, lake_dir = world
    ingest_days(spark, landing, lake_dir)
    ingest_partition(spark, "engagements", PREV_DAY, landing, lake_dir)
    good = [engagement("ok1"), engagement("ok2", post_id=101, viewer=3, type="dwell", value=4200.0)]
    write_jsonl(landing, "engagements", DAY, good + [row for row, _ in BAD_CASES])

    report = ingest_partition(spark, "engagements", DAY, landing, lake_dir)

    expected: dict[str, int] = {}
    for _, reason in BAD_CASES:
        expected[reason] = expected.get(reason, 0) + 1
    assert report.quarantined_by_reason == expected
    assert report.unknown_enum_values == {"type": {"superlike": 1}, "surface": {"reels": 1}}
    assert report.rows_landed == 2
    assert report.rows_read == len(good) + len(BAD_CASES)
    assert report.reconciles

    quarantined = spark.read.parquet(report.quarantine_path)
    by_line = {r.raw_line: r.reason for r in quarantined.collect()}
    for row, reason in BAD_CASES:
        line = row if isinstance(row, str) else json.dumps(row)
        assert by_line[line] == reason
    assert all(r.source_file.endswith("part-00000.jsonl") for r in quarantined.collect())
    landed = spark.read.parquet(report.lake_path)
    assert sorted(r.event_id for r in landed.collect()) == ["ok1", "ok2"]
    dwell = landed.where(F.col("event_id") == "ok2").first()
    assert dwell.value == 4200.0 and dwell.type == "dwell"


def test_duplicates_within_a_day_and_across_days_are_dropped_and_counted(spark, world):
    landing, lake_dir = world
    ingest_days(spark, landing, lake_dir)
    ingest_partition(spark, "engagements", PREV_DAY, landing, lake_dir)
    rows = [engagement("a"), engagement("a"), engagement("b"),
            engagement("e-old", ts=f"{PREV_DAY}T12:00:00.000Z")]  # re-sent from yesterday
    write_jsonl(landing, "engagements", DAY, rows)

    report = ingest_partition(spark, "engagements", DAY, landing, lake_dir)

    assert (report.rows_read, report.rows_landed, report.duplicates_dropped) == (4, 2, 2)
    assert report.rows_quarantined == 0 and report.reconciles


def test_the_same_file_landed_twice_yields_no_duplicates(spark, world):
    landing, lake_dir = world
    ingest_days(spark, landing, lake_dir)
    path = write_jsonl(landing, "engagements", DAY, [engagement("a"), engagement("b")])
    first = ingest_partition(spark, "engagements", DAY, landing, lake_dir)
    shutil.copy(path, path.with_name("part-00000.retry.jsonl"))

    second = ingest_partition(spark, "engagements", DAY, landing, lake_dir)

    assert first.rows_landed == second.rows_landed == 2
    assert second.duplicates_dropped == 2 and second.reconciles
    assert spark.read.parquet(second.lake_path).count() == 2


def test_rerunning_a_partition_replaces_it(spark, world):
    landing, lake_dir = world
    ingest_days(spark, landing, lake_dir)
    write_jsonl(landing, "engagements", DAY, [engagement("a"), "not json"])
    ingest_partition(spark, "engagements", DAY, landing, lake_dir)
    again = ingest_partition(spark, "engagements", DAY, landing, lake_dir)

    assert spark.read.parquet(again.lake_path).count() == 1
    assert spark.read.parquet(again.quarantine_path).count() == 1


def test_a_post_deletion_row_lands_beside_its_creation_row(spark, world):
    landing, lake_dir = world
    deletion = dict(post(100, 2), deleted_at=f"{DAY}T09:00:00.000Z")
    write_jsonl(landing, "posts", DAY, [post(101, 3, f"{DAY}T02:00:00.000Z"), deletion, deletion])
    reports = ingest_days(spark, landing, lake_dir)

    today = reports[("posts", DAY)]
    assert (today.rows_landed, today.duplicates_dropped) == (2, 1)


def test_an_unreadable_file_is_quarantined_whole_naming_the_file(spark, world):
    """A binary file no longer stops the day: the good files land, the file is named with its
    reason, and the partition does not reconcile (tests/ingest/test_ingest_every_line.py)."""
    landing, lake_dir = world
    ingest_days(spark, landing, lake_dir)
    write_jsonl(landing, "engagements", DAY, [engagement("a")])
    bad = lake.landing_day_dir(landing, "engagements", DAY) / "part-00001.jsonl"
    bad.write_bytes(b"PAR1\x00\x01\x02binary")

    report = ingest_partition(spark, "engagements", DAY, landing, lake_dir)

    assert report.rows_landed == 1 and list(report.files_rejected) == [str(bad)]
    assert report.files_rejected[str(bad)].startswith("binary_file") and not report.reconciles


def test_a_log_the_export_does_not_carry_lands_as_an_empty_partition(spark, world):
    landing, lake_dir = world
    ingest_days(spark, landing, lake_dir)
    assert not lake.landing_day_dir(landing, "blocks", DAY).exists()
    report = ingest_partition(spark, "blocks", DAY, landing, lake_dir)
    assert (report.rows_read, report.rows_landed, report.reconciles) == (0, 0, True)
    assert lake.partition_days(lake_dir, "blocks") == [DAY]


def test_ingesting_before_the_referenced_log_fails_naming_the_missing_input(spark, world):
    landing, lake_dir = world
    write_jsonl(landing, "engagements", DAY, [engagement("a")])
    with pytest.raises(IngestError, match="ingest posts for 2026-10-03 first"):
        ingest_days(spark, landing, lake_dir, logs=("users",), days=(PREV_DAY, DAY))
        ingest_partition(spark, "engagements", DAY, landing, lake_dir)
