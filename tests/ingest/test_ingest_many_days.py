"""Many landing days in one pass land exactly what ingesting them one by one, in day order, lands:
the same reports, and the same rows in every lake, quarantine and id-map partition."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, timedelta
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from data import id_map, lake
from data.contracts import CONTRACTS
from data.ingest.partition import ingest_log_days, ingest_partition
from tests.builders import engagement, post, user, write_jsonl

# Other dates than the simulator's, string and native ids side by side.
DAYS = [(date(2019, 3, 1) + timedelta(days=i)).isoformat() for i in range(5)]
LOGS = ("users", "posts", "engagements")  # in reference order
LOOK_BACK_DAYS = 1  # engagements look back max_age_days + 1 = 2 days here (7 + 1 shipped)


def at(day: str, hour: int = 12) -> str:
    return f"{day}T{hour:02d}:00:00.000Z"


def event(eid: str, day: str, viewer: int | str = 2, post_id: int = 100, **over) -> dict:
    return engagement(eid, viewer=viewer, post_id=post_id, **{"author_id": "u-a", "ts": at(day), **over})


@pytest.fixture(scope="module", autouse=True)
def short_look_back():
    """Five days exercise an event log's look-back when it is one day (`max_age_days` = 1)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(CONTRACTS, "engagements",
                      dataclasses.replace(CONTRACTS["engagements"], max_age_days=LOOK_BACK_DAYS))
        yield


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("landing")
    d0, d1, d2, d3, d4 = DAYS
    write_jsonl(folder, "users", d0, [user("u-a", at(d0, 1)), user(2, at(d0, 1)), user(2, at(d0, 1)), "{not json"])
    (lake.landing_day_dir(folder, "users", d0) / "part-00001.jsonl").write_bytes(  # quarantined before Spark
        b'{"user_id": 9, "country": "\xff\xfe"}\n')
    write_jsonl(folder, "users", d1, [user(2, at(d0, 1)), user(3, at(d1, 1))])  # 2: a copy of d0's
    write_jsonl(folder, "users", d2, [user("u-a", at(d2, 1), is_private=True)])  # a new version lands
    # no users on d3, d4: empty partitions
    write_jsonl(folder, "posts", d0, [post(100, "u-a", at(d0)), post(101, 3, at(d0))])  # 3 lands on d1
    write_jsonl(folder, "posts", d1, [post(101, 3, at(d1)), post(100, "u-a", at(d0))])
    for day in (d2, d3, d4):
        write_jsonl(folder, "posts", day, [post(200 + DAYS.index(day), 2, at(day))])
    write_jsonl(folder, "engagements", d0, [event("e1", d0), event("e1", d0), event("e-s", d0, viewer="u-a")])
    write_jsonl(folder, "engagements", d1, [event("e1", d0), event("e2", d1, post_id=101)])
    write_jsonl(folder, "engagements", d2, [event("e1", d2), event("e3", d2, post_id=999)])  # e1 within look-back
    # e1 last landed on d0, beyond the look-back: it lands again; e2 landed on d1, within it
    write_jsonl(folder, "engagements", d3, [event("e1", d3), event("e2", d3)])
    write_jsonl(folder, "engagements", d4, [event("e1", d4), event("e2", d4), event("e-old", d4, ts=at(d2))])
    return folder


@pytest.fixture(scope="module")
def day_by_day(spark, landing, tmp_path_factory) -> tuple[Path, dict]:
    """The oracle: every day ingested alone, in day order (each day's logs in reference order)."""
    lake_dir = tmp_path_factory.mktemp("day_by_day")
    reports = {(log, day): ingest_partition(spark, log, day, landing, lake_dir) for day in DAYS for log in LOGS}
    return lake_dir, reports


def in_one_pass(spark, landing: Path, lake_dir: Path, days: list[str]) -> dict:
    return {(log, day): report for log in LOGS
            for day, report in ingest_log_days(spark, log, days, landing, lake_dir).items()}


def comparable(reports: dict) -> dict:
    """A report without the lake paths it names (each run has its own lake)."""
    paths = ("lake_path", "quarantine_path", "id_map_path")
    return {k: {f: v for f, v in dataclasses.asdict(r).items() if f not in paths} for k, r in reports.items()}


def partitions(lake_dir: Path) -> dict:
    """Every partition's rows (sorted), by (kind, log, day)."""
    out = {}
    for log in LOGS:
        for day in DAYS:
            for kind, folder in (("lake", lake.partition_dir(lake_dir, log, day)),
                                 ("quarantine", lake.quarantine_dir(lake_dir, log, day)),
                                 ("id_map", id_map.partition_dir(lake_dir, log, day))):
                assert (folder / "_SUCCESS").exists(), folder
                rows = pads.dataset(folder, format="parquet").to_table().to_pylist()
                out[(kind, log, day)] = sorted(rows, key=repr)
    return out


def test_a_pass_over_many_days_lands_what_day_by_day_lands(spark, landing, day_by_day, tmp_path):
    oracle, expected = day_by_day
    got = in_one_pass(spark, landing, tmp_path / "one_pass", DAYS)
    assert comparable(got) == comparable(expected)
    assert partitions(tmp_path / "one_pass") == partitions(oracle)

    # the cases this world was built for, as day-by-day ingestion decides them
    d0, d1, d2, d3, d4 = DAYS
    assert expected[("users", d0)].duplicates_dropped == 1 and expected[("users", d1)].duplicates_dropped == 1
    assert expected[("users", d0)].quarantined_by_reason == {"malformed_json": 1, "bad_encoding": 1}
    assert expected[("users", d3)].rows_read == 0 and expected[("users", d3)].reconciles
    assert expected[("posts", d0)].quarantined_by_reason == {"unknown_reference:author_id": 1}
    assert expected[("posts", d1)].rows_landed == 1 and expected[("posts", d1)].duplicates_dropped == 1
    engagements = {day: expected[("engagements", day)] for day in DAYS}
    assert [engagements[d].rows_landed for d in DAYS] == [2, 1, 0, 1, 1]  # e1 on d0, d3; e2 on d1, d4
    assert [engagements[d].duplicates_dropped for d in DAYS] == [1, 1, 1, 1, 1]
    assert engagements[d2].quarantined_by_reason == {"unknown_reference:post_id": 1}
    assert engagements[d4].quarantined_by_reason == {"ts_too_old": 1}
    assert all(r.reconciles for r in expected.values())


def test_a_pass_over_days_between_landed_ones_decides_as_day_by_day(spark, landing, day_by_day, tmp_path):
    """Re-ingesting the middle days, with landed days before and after them: each looks back on the
    lake's earlier days and the pass's, and the later days are left as they are."""
    oracle, expected = day_by_day
    lake_dir = tmp_path / "lake"
    shutil.copytree(oracle, lake_dir)
    again = in_one_pass(spark, landing, lake_dir, DAYS[1:4])
    assert comparable(again) == comparable({k: v for k, v in expected.items() if k[1] in DAYS[1:4]})
    assert partitions(lake_dir) == partitions(oracle)
