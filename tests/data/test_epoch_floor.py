"""Epoch units of a time column, whatever unit it carries (data.lake.epoch_floor): request times in
seconds for retrieval, event times in milliseconds for the real-time backfill."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from data.lake import epoch_floor

INSTANTS = pd.to_datetime(["2026-10-03T12:00:00.999Z", "1969-12-31T23:59:59.500Z", "2019-03-04T00:00:00Z"],
                          utc=True, format="ISO8601")
EXPECTED = [1_791_028_800, -1, 1_551_657_600]  # floor: half a second before the epoch is -1
EXPECTED_MS = [1_791_028_800_999, -500, 1_551_657_600_000]


def epoch_seconds(ts: pd.Series) -> list[int]:
    return epoch_floor(ts, pd.Timedelta(seconds=1)).tolist()


@pytest.mark.parametrize("unit", ["ns", "us", "ms"])
def test_every_pandas_unit_gives_the_same_seconds(unit):
    assert epoch_seconds(pd.Series(INSTANTS).astype(f"datetime64[{unit}, UTC]")) == EXPECTED


def test_whole_seconds():
    whole = pd.Series(INSTANTS[[0, 2]].floor("s")).astype("datetime64[s, UTC]")
    assert epoch_seconds(whole) == [EXPECTED[0], EXPECTED[2]]


def test_the_lake_and_contract_units_read_through_arrow():
    """What training actually gets: Parquet micros (Spark's TIMESTAMP_MICROS) and contract millis,
    converted by pyarrow to pandas, keep their unit; naive times are taken as UTC."""
    for unit in ("us", "ms"):
        arr = pa.array(INSTANTS).cast(pa.timestamp(unit, tz="UTC"))
        frame = pa.table({"ts": arr}).to_pandas()
        assert str(frame["ts"].dtype) == f"datetime64[{unit}, UTC]"
        assert epoch_seconds(frame["ts"]) == EXPECTED
        assert epoch_floor(frame["ts"], pd.Timedelta(milliseconds=1)).tolist() == EXPECTED_MS
    naive = pd.Series(INSTANTS.tz_localize(None)).astype("datetime64[us]")
    assert epoch_seconds(naive) == EXPECTED


def test_the_old_nanosecond_assumption_was_wrong_on_the_lake_unit():
    ts = pd.Series(INSTANTS[:1]).astype("datetime64[us, UTC]")
    assert (ts.astype("int64") // 10**9).tolist() != EXPECTED[:1]  # what training computed before
    assert epoch_seconds(ts) == EXPECTED[:1]
