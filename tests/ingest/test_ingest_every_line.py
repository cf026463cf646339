"""Ingestion accounts for every line: every physical line of every landing file is read,
counted by Loupe itself (not by Spark), and ends landed, quarantined or dropped as a duplicate; a file
that is not read is named, with its reason, and fails the day's check."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import dagster as dg
import pytest
from pyspark.sql import functions as F

from data import lake
from data.ingest import partition as ingest
from data.ingest.partition import ingest_partition
from tests.builders import DAY, user


def physical_lines(data: bytes) -> int:
    """Lines as the landing contract counts them: each b"\\n", plus a last line without one."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def users_bytes(*ids: int, **over) -> bytes:
    return b"".join(json.dumps(user(i, **over)).encode() + b"\n" for i in ids)


def land(landing: Path, name: str, data: bytes, log: str = "users", day: str = DAY) -> Path:
    folder = lake.landing_day_dir(landing, log, day)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def landed_ids(spark, report) -> list[int]:
    return sorted(r.user_id for r in spark.read.parquet(report.lake_path).collect())


def quarantine(spark, report) -> list:
    return spark.read.parquet(report.quarantine_path).collect()


@pytest.fixture
def dirs(tmp_path: Path):
    return tmp_path / "landing", tmp_path / "lake"


def test_hidden_and_underscore_files_are_read_not_dropped(spark, dirs):
    landing, lake_dir = dirs
    named = {".x.jsonl": (1, 2), "_x.jsonl": (3,), "..jsonl": (4, 5, 6), "plain.jsonl": (7,)}
    for name, ids in named.items():
        land(landing, name, users_bytes(*ids))

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    assert report.rows_read == 7 and report.rows_landed == 7 and report.reconciles
    assert landed_ids(spark, report) == list(range(1, 8))
    assert sorted(Path(f).name for f in report.files) == sorted(named)


def test_rows_read_is_counted_by_loupe_so_a_line_spark_missed_fails_the_check(spark, dirs, monkeypatch):
    """A reader that loses a line (as Spark's hidden-file filter did) no longer passes: rows_read is
    Loupe's own count of the file's lines, not landed + quarantined + duplicates."""
    from pipelines.defs.ingest.assets import ingest_assets, lake_key
    from pipelines.partitions import materialize_day
    from pipelines.resources import SparkResource, WorkspaceResource

    landing, lake_dir = dirs
    land(landing, "part-00000.jsonl", users_bytes(1, 2, 3))
    read = ingest.spark_lines
    monkeypatch.setattr(ingest, "spark_lines", lambda *a, **k: dataclasses.replace(
        lines := read(*a, **k), frame=lines.frame.where(~F.col("value").contains('"user_id": 2,'))))

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)
    assert (report.rows_read, report.rows_landed, report.rows_quarantined) == (3, 2, 0)
    assert not report.reconciles

    result = materialize_day(
        ingest_assets, selection=[lake_key("users")], partition_key=DAY, raise_on_error=False,
        resources={"spark": SparkResource(master="local[2]", driver_memory="2g"),
                   "workspace": WorkspaceResource(landing_dir=str(landing), lake_dir=str(lake_dir))},
    )
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "reconciles"]
    assert not check.passed
    assert check.metadata["rows_read"].value == 3 and check.metadata["accounted"].value == 2


GLOB_NAMES = {
    "star*.jsonl": (1,), "star-other.jsonl": (2, 3, 4), "x{a,b}.jsonl": (5,), "xa.jsonl": (6,),
    "x:y.jsonl": (7,), "[ab].jsonl": (8,), "a.jsonl": (9,), "q?.jsonl": (10,), "back\\slash.jsonl": (11,),
    "sp ace é.jsonl": (12,), "pct%20.jsonl": (13,), "hash#.jsonl": (14,),
}


def test_file_names_are_exact_paths_never_glob_patterns(spark, dirs):
    landing, lake_dir = dirs
    paths = {}
    for name, ids in GLOB_NAMES.items():
        paths[name] = land(landing, name, users_bytes(*ids) + f"not json from {name}\n".encode())

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    n = sum(len(ids) for ids in GLOB_NAMES.values())
    assert (report.rows_read, report.rows_landed, report.rows_quarantined) == (n + len(GLOB_NAMES), n, len(GLOB_NAMES))
    assert report.reconciles and landed_ids(spark, report) == list(range(1, n + 1))
    # each malformed line is traced to the exact file it came from
    by_file = {r.source_file: r.raw_line for r in quarantine(spark, report)}
    assert by_file == {str(paths[name]): f"not json from {name}" for name in GLOB_NAMES}


def test_invalid_utf8_is_quarantined_per_line_as_bad_encoding(spark, dirs):
    landing, lake_dir = dirs
    latin1 = json.dumps(user(2, country="Genève"), ensure_ascii=False).encode("latin-1")
    utf8 = json.dumps(user(3, country="Genève"), ensure_ascii=False).encode("utf-8")
    path = land(landing, "part-00000.jsonl", users_bytes(1) + latin1 + b"\n" + utf8 + b"\n")

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    assert report.quarantined_by_reason == {"bad_encoding": 1}
    assert (report.rows_read, report.rows_landed) == (3, 2) and report.reconciles
    (row,) = quarantine(spark, report)
    assert row.source_file == str(path) and "Gen\\xe8ve" in row.raw_line  # the bad byte, shown
    countries = {r.user_id: r.country for r in spark.read.parquet(report.lake_path).collect()}
    assert countries == {1: "FR", 3: "Genève"}  # never U+FFFD


SHIPPED_MAX_LINE_BYTES = 1 << 20  # data/ingest/config.toml [ingest] max_line_bytes


def test_an_over_long_line_is_quarantined_as_line_too_long_at_the_configured_limit(spark, dirs):
    landing, lake_dir = dirs
    limit = SHIPPED_MAX_LINE_BYTES

    def line_of(uid: int, size: int) -> bytes:
        row = json.dumps(user(uid, country="")).encode()
        return row.replace(b'"country": ""', b'"country": "' + b"x" * (size - len(row)) + b'"')

    at_limit, over = line_of(1, limit), line_of(2, limit + 1)
    huge = line_of(3, 3 * limit + 12345)  # longer than any read buffer
    assert (len(at_limit), len(over)) == (limit, limit + 1)
    land(landing, "part-00000.jsonl", at_limit + b"\n" + over + b"\n" + huge + b"\n" + users_bytes(4))

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    assert report.quarantined_by_reason == {"line_too_long": 2}
    assert (report.rows_read, report.rows_landed) == (4, 2) and report.reconciles
    assert landed_ids(spark, report) == [1, 4]
    kept = sorted(len(r.raw_line) for r in quarantine(spark, report))
    assert kept == [limit, limit]  # raw_line keeps the line's first max_line_bytes bytes

    from data.ingest.config import IngestConfig, load_ingest_config

    assert load_ingest_config().max_line_bytes == limit
    small = ingest_partition(spark, "users", DAY, landing, lake_dir, config=IngestConfig(max_line_bytes=500))
    assert small.quarantined_by_reason == {"line_too_long": 3} and small.rows_landed == 1


def test_a_binary_or_unreadable_file_is_quarantined_whole_and_the_rest_of_the_day_lands(spark, dirs):
    landing, lake_dir = dirs
    land(landing, "part-00000.jsonl", users_bytes(1, 2))
    binary = land(landing, "part-00001.jsonl", b"PAR1\x00\x01\x02binary\n\x00\x00")
    not_gzip = land(landing, "part-00002.jsonl.gz", b"\x1f\x8b\x08\x00 not really gzip")
    cut = land(landing, "part-00003.jsonl.gz", gzip.compress(users_bytes(*range(10, 200)))[:300])

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    assert landed_ids(spark, report) == [1, 2]
    assert (report.rows_read, report.rows_landed) == (2, 2)
    assert set(report.files_rejected) == {str(binary), str(not_gzip), str(cut)}
    assert report.files_rejected[str(binary)].startswith("binary_file")
    assert report.files_rejected[str(cut)].startswith("unreadable_file")
    assert not report.reconciles  # the day's check fails: files were not read
    rows = {r.source_file: r for r in quarantine(spark, report)}
    assert {f: r.reason for f, r in rows.items()} == {
        str(binary): "binary_file", str(not_gzip): "unreadable_file", str(cut): "unreadable_file"}
    assert all(r.raw_line is None for r in rows.values())


def test_only_the_documented_boolean_spellings_are_accepted(spark, dirs):
    landing, lake_dir = dirs
    good = {1: True, 2: False, 3: "true", 4: "false", 5: 1, 6: 0}
    bad = {7: "yes", 8: "no", 9: "True", 10: "t", 11: " true", 12: 1.0, 13: "y"}
    rows = [user(uid, is_private=value) for uid, value in {**good, **bad}.items()]
    land(landing, "part-00000.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in rows))

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    assert report.quarantined_by_reason == {"bad_type:is_private": len(bad)}
    private = {r.user_id: r.is_private for r in spark.read.parquet(report.lake_path).collect()}
    assert private == {1: True, 2: False, 3: True, 4: False, 5: True, 6: False}


def test_jsonl_gz_is_read_and_any_other_name_is_listed_as_ignored_and_fails_the_check(spark, dirs):
    landing, lake_dir = dirs
    land(landing, "part-00000.jsonl", users_bytes(1))
    land(landing, "part-00001.jsonl.gz", gzip.compress(users_bytes(2, 3)))
    ignored = [land(landing, name, users_bytes(9)) for name in ("UP.JSONL", "notes.txt", "old.json", "x.jsonl.bz2")]
    sub = lake.landing_day_dir(landing, "users", DAY) / "nested"
    sub.mkdir()
    (sub / "part.jsonl").write_bytes(users_bytes(9))

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    assert landed_ids(spark, report) == [1, 2, 3] and report.rows_read == 3
    assert set(report.files_ignored) == {str(p) for p in ignored} | {str(sub)}
    assert all(reason for reason in report.files_ignored.values())
    assert not report.reconciles


def test_a_link_out_of_the_landing_folder_is_not_followed(spark, dirs, tmp_path):
    landing, lake_dir = dirs
    land(landing, "part-00000.jsonl", users_bytes(1))
    secret = tmp_path / "elsewhere" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_bytes(b"top secret, not json\n" + users_bytes(66))
    folder = lake.landing_day_dir(landing, "users", DAY)
    (folder / "out.jsonl").symlink_to(secret)
    (folder / "dangling.jsonl").symlink_to(tmp_path / "nothing-here.jsonl")
    inside = landing / "shared" / "inside.jsonl"
    inside.parent.mkdir()
    inside.write_bytes(users_bytes(2))
    (folder / "in.jsonl").symlink_to(inside)

    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    assert landed_ids(spark, report) == [1, 2] and report.rows_read == 2
    assert set(report.files_ignored) == {str(folder / "out.jsonl"), str(folder / "dangling.jsonl")}
    assert "outside the landing folder" in report.files_ignored[str(folder / "out.jsonl")]
    assert quarantine(spark, report) == []  # nothing of the secret file was copied
    assert not report.reconciles


def test_the_asset_check_fails_naming_each_file_not_read_while_good_rows_land(spark, dirs):
    from pipelines.defs.ingest.assets import ingest_assets, lake_key
    from pipelines.partitions import materialize_day
    from pipelines.resources import SparkResource, WorkspaceResource

    landing, lake_dir = dirs
    land(landing, ".hidden.jsonl", users_bytes(1, 2))
    binary = land(landing, "dump.jsonl", b"\x00\x01\x02")
    notes = land(landing, "notes.txt", b"hello\n")

    result = materialize_day(
        ingest_assets, selection=[lake_key("users")], partition_key=DAY, raise_on_error=False,
        resources={"spark": SparkResource(master="local[2]", driver_memory="2g"),
                   "workspace": WorkspaceResource(landing_dir=str(landing), lake_dir=str(lake_dir))},
    )

    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["rows_read"] == meta["rows_landed"] == 2
    assert list(meta["files_rejected"]) == [str(binary)] and list(meta["files_ignored"]) == [str(notes)]
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "reconciles"]
    assert not check.passed
    assert check.metadata["files_not_read"].value == 2
    assert check.description and "dump.jsonl" in check.description and "notes.txt" in check.description
    assert isinstance(result, dg.ExecuteInProcessResult)


def test_a_file_that_cannot_be_read_is_rejected_not_fatal(spark, dirs, monkeypatch):
    from data.ingest import landing as landing_read

    landing, lake_dir = dirs
    land(landing, "part-00000.jsonl", users_bytes(1))
    locked = land(landing, "part-00001.jsonl", users_bytes(2))
    real_open = landing_read.open_landing_file

    def no_permission(path):  # as a file without read permission does (the tests may run as root)
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(landing_read, "open_landing_file", no_permission)
    report = ingest_partition(spark, "users", DAY, landing, lake_dir)

    assert landed_ids(spark, report) == [1]
    assert report.files_rejected[str(locked)].startswith("unreadable_file: PermissionError")
    assert not report.reconciles


def test_make_run_stops_with_the_checks_words_when_a_day_holds_a_file_it_did_not_read(spark, tmp_path):
    """`make run`'s ingest stops on a failed reconcile check with its description (naming the file),
    not with a raw Dagster error."""
    from data.settings import Settings
    from pipelines.operations import IngestStopped, ingest_days

    landing = tmp_path / "landing"
    land(landing, "part-00000.jsonl", users_bytes(1, 2))
    land(landing, "notes.txt", b"hello\n")
    settings = Settings.from_env({"LOUPE_HOME": str(tmp_path / "home"), "LOUPE_LANDING": str(landing),
                                  "LOUPE_SOURCE": "landing"})
    with dg.DagsterInstance.ephemeral() as instance, pytest.raises(IngestStopped, match=r"notes\.txt"):
        ingest_days(settings, [DAY], instance)
