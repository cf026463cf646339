"""The event stream lands: what the archiver files into the landing folder is ingested like any
export's lines, and the day's reconciles check holds the day's stream files to the archiver's own
count (landed + quarantined + duplicates = lines archived), only once the archiver closed the day."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from data.days import day_end_ms, day_start_ms
from data.redis_server import EmbeddedRedis
from data.settings import Settings
from data.stream.archiver import StreamArchiver
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from pipelines.defs.ingest.assets import RECONCILES, ingest_assets, lake_key
from pipelines.partitions import register_days
from pipelines.resources import build_resources
from tests.builders import DAY, NEXT_DAY, user

HOUR_MS = 3_600_000


@pytest.fixture
def stream(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        yield ValkeyStream.connect(server.url, partitions=3)


def users_check(settings: Settings, day: str) -> tuple[dict, dg.AssetCheckEvaluation]:
    with dg.DagsterInstance.ephemeral() as instance:
        register_days(instance, [day])
        result = dg.materialize(ingest_assets, selection=[lake_key("users")], partition_key=day,
                                instance=instance, resources=build_resources(settings), raise_on_error=False)
    [event] = result.get_asset_materialization_events()
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == RECONCILES]
    return {k: v.value for k, v in event.materialization.metadata.items()}, check


def test_archived_events_are_ingested_and_reconciled_with_the_archivers_count(spark, stream, tmp_path):
    landing = tmp_path / "landing"
    settings = Settings(home=tmp_path / "loupe", landing=landing, source="landing")
    lines = [json.dumps(user(i, ts=f"{DAY}T08:00:00.000Z")) for i in range(1, 41)]
    lines += ["{not json", lines[0]]  # one quarantined, one duplicate
    stream.append([Event("users", line, str(i)) for i, line in enumerate(lines)],
                  at_ms=day_start_ms(DAY) + 12 * HOUR_MS)
    StreamArchiver(stream, landing, clock_ms=lambda: day_end_ms(DAY) + 1).archive()  # DAY has ended

    meta, check = users_check(settings, DAY)
    assert check.passed, check.description
    assert (meta["rows_read"], meta["rows_landed"], meta["rows_quarantined"], meta["duplicates_dropped"]) == (
        42, 40, 1, 1)

    # an archived file gone from the day folder: the day no longer holds what was archived
    next(landing.glob(f"users/{DAY}/stream-*.jsonl")).unlink()
    _, check = users_check(settings, DAY)
    assert not check.passed and "the archiver archived 42" in check.description


def test_a_day_still_open_is_judged_on_what_is_archived_so_far(spark, stream, tmp_path):
    landing = tmp_path / "landing"
    settings = Settings(home=tmp_path / "loupe", landing=landing, source="landing")
    at = day_start_ms(NEXT_DAY) + 9 * HOUR_MS
    line = json.dumps(user(1, ts=f"{NEXT_DAY}T08:00:00.000Z"))
    stream.append([Event("users", line, "1")], at_ms=at)
    archiver = StreamArchiver(stream, landing, clock_ms=lambda: at + HOUR_MS)  # NEXT_DAY is not over
    archiver.archive()
    meta, check = users_check(settings, NEXT_DAY)
    assert check.passed and meta["rows_landed"] == 1
    # a batch the archiver committed but had not moved into the day folder yet
    (landing / "_stream" / "partition-0.json").write_text(json.dumps(
        {"archived_up_to": f"{at}-5", "lines": {f"users/{NEXT_DAY}": 7}, "complete_up_to_ms": 0}))
    _, check = users_check(settings, NEXT_DAY)
    assert not check.passed and f"{NEXT_DAY} is still open on partitions" in check.description
