"""Reading lake partitions for candidate generation (pyarrow: these tables fit one machine's
memory, and the worker and the Explore builders run without a Spark session).

Rows are selected by landing day (`dt`), the lake's partition key: a row of day D is known at the
end of D whatever its own timestamp says (late events included), as in the feature jobs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

from data import columns as c
from data import lake


def read_days(
    lake_dir: Path, table: str, first: str | None, last: str, columns: list[str] | None = None
) -> pd.DataFrame:
    """Rows of `table` landed on days in [first, last] (first=None: from the beginning)."""
    days = [d for d in lake.partition_days(lake_dir, table) if d <= last and (first is None or d >= first)]
    if not days:
        return pd.DataFrame(columns=columns or [])
    paths = [str(lake.partition_dir(lake_dir, table, d)) for d in days]
    frames = []
    for day, path in zip(days, paths, strict=True):
        part = pads.dataset(path, format="parquet").to_table(columns=columns).to_pandas()
        part[c.DT] = day
        frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    return out if columns is None else out[[*columns, c.DT]]


def to_ms(series: pd.Series) -> pd.Series:
    """A timestamp column as epoch milliseconds (int64)."""
    return pd.to_datetime(series, utc=True).astype("datetime64[ms, UTC]").astype("int64")
