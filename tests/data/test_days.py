"""data/days.py: the day arithmetic every room shares (a build's "as of", a service's clock, a
partition's neighbours) agrees with pandas' reading of the same UTC instants."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from data.days import (
    DAY_MS,
    DAY_S,
    day_end,
    day_end_iso,
    day_end_ms,
    day_start,
    day_start_ms,
    days_after,
    days_before,
)


@pytest.mark.parametrize("day", ["2026-10-07", "2024-02-29", "1970-01-01", "2026-12-31"])
def test_bounds_are_the_utc_midnights(day: str) -> None:
    start = pd.Timestamp(day, tz="UTC")
    assert day_start(day) == start.to_pydatetime() == day_start(date.fromisoformat(day))
    assert day_end(day) == (start + pd.Timedelta(days=1)).to_pydatetime()
    assert day_start_ms(day) == start.value // 1_000_000
    assert day_end_ms(day) == day_start_ms(day) + DAY_MS == (start + pd.Timedelta(days=1)).value // 1_000_000
    assert day_end(day).tzinfo is UTC


def test_the_service_clock_form() -> None:
    assert day_end_iso("2026-10-07") == "2026-10-08T00:00:00Z"
    assert day_end_iso("2026-12-31") == "2027-01-01T00:00:00Z"
    assert datetime.fromisoformat(day_end_iso("2026-10-07").replace("Z", "+00:00")) == day_end("2026-10-07")


def test_neighbouring_days_cross_month_and_year() -> None:
    assert days_before("2026-03-01", 1) == "2026-02-28"
    assert days_after("2024-02-28", 1) == "2024-02-29"
    assert days_after("2026-12-31", 1) == "2027-01-01"
    assert days_before("2026-10-07", 0) == days_after("2026-10-07", 0) == "2026-10-07"
    assert days_before(days_after("2026-10-07", 30), 30) == "2026-10-07"
    assert DAY_S * 1000 == DAY_MS
