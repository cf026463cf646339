"""Where things live in the workspace: the landing folder and the Parquet lake.

landing/<log_type>/<YYYY-MM-DD>/*.jsonl     exporters drop files here (or *.jsonl.gz), one folder per landing day
lake/<table>/dt=<YYYY-MM-DD>/*.parquet      validated rows of that landing day
lake/quarantine/<table>/dt=<YYYY-MM-DD>/    rejected lines with the reason, never silently lost
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from data import columns as c
from data.days import day_end, day_start

LANDING_SUFFIXES = (".jsonl", ".jsonl.gz")  # what ingestion reads; any other name it lists as ignored


def landing_day_dir(landing_dir: Path, log_type: str, day: str) -> Path:
    return Path(landing_dir) / log_type / day


def landing_files(landing_dir: Path, log_type: str, day: str) -> list[Path]:
    """Everything that landed in one log's day folder, sorted: ingestion reads the `LANDING_SUFFIXES`
    files and names every other entry (another suffix, a folder, a link out) as ignored, so a day
    holding only those is still a day to ingest, and fails its check instead of passing unseen."""
    folder = landing_day_dir(landing_dir, log_type, day)
    if not folder.is_dir():
        return []
    return sorted(folder.iterdir())


def table_dir(lake_dir: Path, table: str) -> Path:
    return Path(lake_dir) / table


def partition_dir(lake_dir: Path, table: str, day: str) -> Path:
    return table_dir(lake_dir, table) / f"dt={day}"


def quarantine_dir(lake_dir: Path, table: str, day: str) -> Path:
    return Path(lake_dir) / "quarantine" / table / f"dt={day}"


def partition_days(lake_dir: Path, table: str) -> list[str]:
    """Days that have a written partition (a `_SUCCESS` marker from the Spark commit)."""
    root = table_dir(lake_dir, table)
    if not root.is_dir():
        return []
    return sorted(
        p.name.removeprefix("dt=")
        for p in root.iterdir()
        if p.name.startswith("dt=") and (p / "_SUCCESS").exists()
    )


def read_partitions(lake_dir: Path, table: str, days: list[str], columns: list[str], filt=None) -> pd.DataFrame:
    """`columns` of the written partitions of `days` (those without `_SUCCESS` are left out), rows
    matching the pyarrow filter `filt`; an empty frame when none is written."""
    files = [str(f) for d in days if (partition_dir(lake_dir, table, d) / "_SUCCESS").exists()
             for f in sorted(partition_dir(lake_dir, table, d).glob("*.parquet"))]
    if not files:
        return pd.DataFrame(columns=columns)
    return ds.dataset(files, format="parquet").to_table(columns=columns, filter=filt).to_pandas()


def ts_on_day(day: str, column: str = c.TS) -> ds.Expression:
    """A filter: the row's time (`column`, the lake's µs UTC) falls on `day`. Lines land on their
    landing day, so a day's events are in its partition and, arrived late, in the next one."""
    unit = pa.timestamp("us", "UTC")
    return (ds.field(column) >= pa.scalar(day_start(day), unit)) & (ds.field(column) < pa.scalar(day_end(day), unit))


def ts_within(first_ms: int, last_ms: int, column: str = c.TS) -> ds.Expression:
    """A filter: the row's time (`column`, the lake's µs UTC) within [first_ms, last_ms] (epoch ms)."""
    unit = pa.timestamp("us", "UTC")
    ts = ds.field(column)
    return (ts >= pa.scalar(first_ms * 1000, unit)) & (ts <= pa.scalar(last_ms * 1000, unit))


_EPOCH = pd.Timestamp(0, tz="UTC")


def epoch_floor(ts: pd.Series, unit: pd.Timedelta) -> pd.Series:
    """Whole epoch `unit`s (floor) of a time column, whatever its own unit: the lake's Parquet holds
    microseconds (Spark), the contracts milliseconds, pandas defaults to nanoseconds, so the raw
    int64 of a datetime column means a different thing in each. Naive times are UTC."""
    return ((pd.to_datetime(ts, utc=True) - _EPOCH) // unit).astype("int64")
