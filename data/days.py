"""Day arithmetic: the units of time and the bounds of a day.

A day is a UTC calendar day named 'YYYY-MM-DD' (a lake partition, a feature snapshot, a build's
"as of"); a `date` is accepted too. Its end is the next day's start: the time a snapshot or a build
for that day is "as of". Millisecond values are exact ints (epoch ms, as the logs store them).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

MINUTE_MS = 60_000
HOUR_S = 3_600
HOUR_MS = HOUR_S * 1000
DAY_S = 86_400
DAY_MS = DAY_S * 1000

_EPOCH = date(1970, 1, 1)


def _date(day: str | date) -> date:
    return date.fromisoformat(day) if isinstance(day, str) else day


def day_start(day: str | date) -> datetime:
    """00:00 UTC of `day`."""
    d = _date(day)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def day_end(day: str | date) -> datetime:
    """The end of `day` (00:00 UTC of the next day)."""
    return day_start(day) + timedelta(days=1)


def day_start_ms(day: str | date) -> int:
    return (_date(day) - _EPOCH).days * DAY_MS


def day_end_ms(day: str | date) -> int:
    return day_start_ms(day) + DAY_MS


def day_end_iso(day: str | date) -> str:
    """The end of `day` as an ISO-8601 UTC instant, the form LOUPE_NOW takes: '2026-10-08T00:00:00Z'."""
    return day_end(day).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(ms: int) -> str:
    """Epoch ms -> '2026-10-01T08:15:30.123Z', the log contracts' timestamp form."""
    sec, milli = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{milli:03d}Z"


def day_of_ms(ms: int) -> str:
    """The UTC day an epoch-milliseconds instant falls on."""
    return iso_ms(ms)[:10]


def days_before(day: str, n: int) -> str:
    """The day `n` days before `day`."""
    return (date.fromisoformat(day) - timedelta(days=n)).isoformat()


def days_after(day: str, n: int) -> str:
    """The day `n` days after `day`."""
    return (date.fromisoformat(day) + timedelta(days=n)).isoformat()


def days_from(first: str, last: str) -> list[str]:
    """Every calendar day from `first` to `last`, both included (none when `last` is earlier)."""
    return [days_after(first, k) for k in range((date.fromisoformat(last) - date.fromisoformat(first)).days + 1)]
