"""What the Explore builders read from the lake: engagements and posts of a span of landing days.

Rows come with their landing day (`dt`) and times as epoch ms, so the frame computations
(explore.frames) can cut them "as of the end of day D" like the feature snapshots.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from candidate_gen.lake_reader import read_days, to_ms
from data import columns as c
from data import lake
from data.days import DAY_MS, days_before
from features.optional_logs import absent

TS_MS = "ts_ms"
CREATED_MS = "created_ms"
DELETED_MS = "deleted_ms"


def lookback_first_day(day: str, span_ms: int) -> str:
    """First landing day that can hold events dated within `span_ms` of the end of `day` (one more
    day for events that land a little before their own date, clock skew)."""
    return days_before(day, math.ceil(span_ms / DAY_MS) + 1)


def require_day(lake_dir: Path, day: str, tables: tuple[str, ...] = ("engagements", "posts")) -> None:
    """Fail (rather than publish empty trends) when the day's lake partitions are not there; a log
    the export does not have at all (no engagements in a graph-only export) is empty, not missing."""
    missing = [t for t in tables if day not in lake.partition_days(lake_dir, t) and not absent(lake_dir, t)]
    if missing:
        # Imported here: features.jobs loads pyspark, which the read path must not pay for.
        from features.jobs.inputs import MissingInputError

        paths = ", ".join(str(lake.partition_dir(lake_dir, t, day)) for t in missing)
        raise MissingInputError(f"Explore build {day} needs lake partitions that are missing: {paths}")


def read_engagements(lake_dir: Path, first: str, day: str) -> pd.DataFrame:
    """viewer_id, post_id, author_id, type (category), value, ts_ms, dt (category) of the
    engagements landed on days [first, day].

    Read a day at a time so only one day's strings are ever held as Python objects.
    """
    cols = [c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE, c.VALUE, c.TS]
    frames = []
    for d in lake.partition_days(lake_dir, "engagements"):
        if first <= d <= day:
            part = read_days(lake_dir, "engagements", d, d, cols)
            part[TS_MS] = to_ms(part.pop(c.TS))
            part[c.TYPE] = part[c.TYPE].astype("category")
            part[c.DT] = part[c.DT].astype("category")
            frames.append(part)
    if not frames:
        empty = {k: pd.Series(dtype="int64") for k in (c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID)}
        rest = {c.TYPE: pd.Series(dtype="category"), c.VALUE: pd.Series(dtype="float64"),
                TS_MS: pd.Series(dtype="int64"), c.DT: pd.Series(dtype="category")}
        return pd.DataFrame({**empty, **rest})
    categorical = {k: union_categoricals([f[k] for f in frames]) for k in (c.TYPE, c.DT)}
    out = pd.concat([f.drop(columns=list(categorical)) for f in frames], ignore_index=True)
    for k, values in categorical.items():
        out[k] = values
    return out


def read_posts(lake_dir: Path, day: str, first: str | None = None) -> pd.DataFrame:
    """post_id, author_id, created_ms, hashtags, deleted_ms (NaN on creation rows), dt."""
    cols = [c.POST_ID, c.AUTHOR_ID, c.CREATED_AT, c.HASHTAGS, c.DELETED_AT]
    frame = read_days(lake_dir, "posts", first, day, cols)
    if frame.empty:
        return pd.DataFrame({c.POST_ID: pd.Series(dtype="int64"), c.AUTHOR_ID: pd.Series(dtype="int64"),
                             CREATED_MS: pd.Series(dtype="int64"), c.HASHTAGS: pd.Series(dtype="object"),
                             DELETED_MS: pd.Series(dtype="float64"), c.DT: pd.Series(dtype="object")})
    return pd.DataFrame({
        c.POST_ID: frame[c.POST_ID].astype("int64"),
        c.AUTHOR_ID: frame[c.AUTHOR_ID].astype("int64"),
        CREATED_MS: to_ms(frame[c.CREATED_AT]),
        c.HASHTAGS: frame[c.HASHTAGS],
        DELETED_MS: _nullable_ms(frame[c.DELETED_AT]),
        c.DT: frame[c.DT],
    })


def _nullable_ms(series: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(series, utc=True)
    out = pd.Series(np.nan, index=series.index)
    present = stamps.notna()
    if present.any():
        out[present] = to_ms(stamps[present]).astype("float64")
    return out
