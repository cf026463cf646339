"""Partitions shared by every domain: one per landing day, taken from the data, never a fixed date.

Days are Dagster dynamic partitions: `make run` and the landing sensor register the days they find
in the landing folder, so a team's export from 2019 and a simulated world from 2026 both start at
their own first day.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from data import lake
from data.contracts import LOG_TYPES

DAYS = "day"
day_partitions = dg.DynamicPartitionsDefinition(name=DAYS)
# The run tags that make one run cover a range of partitions (assets with a single-run backfill policy)
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def is_day(name: str) -> bool:
    """A landing folder name that is a calendar day (YYYY-MM-DD)."""
    try:
        return date.fromisoformat(name).isoformat() == name
    except ValueError:
        return False


def landing_days(landing_dir: Path) -> list[str]:
    """Every day that holds a landing file of some log, sorted: the days a run processes."""
    days = set()
    for log in LOG_TYPES:
        root = Path(landing_dir) / log
        if root.is_dir():
            days.update(d.name for d in root.iterdir()
                        if is_day(d.name) and lake.landing_files(landing_dir, log, d.name))
    return sorted(days)


def register_days(instance: dg.DagsterInstance, days: list[str]) -> None:
    """Make `days` partitions of the instance (idempotent); a name that is not a day is refused."""
    bad = [d for d in days if not is_day(d)]
    if bad:
        raise ValueError(f"not a day (YYYY-MM-DD): {bad[:5]}")
    new = [d for d in days if not instance.has_dynamic_partition(DAYS, d)]
    if new:
        instance.add_dynamic_partitions(DAYS, new)


def materialize_day(assets, *, partition_key: str | None = None, instance: dg.DagsterInstance | None = None,
                    **kwargs) -> dg.ExecuteInProcessResult:
    """`dg.materialize` for a landing day: registers the day as a partition first (a test or a
    script runs days that no sensor has seen)."""
    instance = instance or dg.DagsterInstance.ephemeral()
    if partition_key is not None:
        register_days(instance, [partition_key])
    return dg.materialize(assets, partition_key=partition_key, instance=instance, **kwargs)
