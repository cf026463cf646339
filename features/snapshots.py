"""A day's feature snapshots: which job computes each table, what each waits for, and writing them.

The six tables of a day are independent Spark jobs but one: `post` smooths its rates toward its
author's, so it reads that day's `author` snapshot. `write_snapshots` runs them concurrently in that
order (data/job_graph.py): a small day's jobs are latency-bound, so overlapping them uses the cores.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pyspark.sql import SparkSession

from data.job_graph import Outcome, run_job_graph
from features.jobs import author, post, post_tags, relationship, viewer, viewer_tags
from features.storage import write_feature_partition
from features.tables import AUTHOR, POST, POST_TAGS, RELATIONSHIP, VIEWER, VIEWER_TAGS, FeatureTable

# In the order a day computes them when one at a time.
SNAPSHOT_TABLES: tuple[FeatureTable, ...] = (AUTHOR, RELATIONSHIP, POST, VIEWER, POST_TAGS, VIEWER_TAGS)
JOBS: dict[str, ModuleType] = {AUTHOR.name: author, RELATIONSHIP.name: relationship, POST.name: post,
                               VIEWER.name: viewer, POST_TAGS.name: post_tags, VIEWER_TAGS.name: viewer_tags}
# table -> the same day's snapshots its job reads
READS_SNAPSHOTS: dict[str, set[str]] = {POST.name: {AUTHOR.name}}


@dataclass(frozen=True)
class Snapshot:
    path: Path
    seconds: float  # the table's own job, start to written (other tables' jobs ran beside it)


def lake_inputs(table: FeatureTable) -> tuple[str, ...]:
    """The lake logs a table's job reads."""
    return JOBS[table.name].INPUTS


def write_snapshot(spark: SparkSession, lake_dir: Path, table: FeatureTable, day: str) -> Path:
    """Compute one table's snapshot of `day` and overwrite its partition."""
    return write_feature_partition(JOBS[table.name].compute(spark, lake_dir, day), lake_dir, table, day)


def write_snapshots(spark: SparkSession, lake_dir: Path, day: str, tables: Iterable[FeatureTable],
                    max_concurrent: int) -> Iterator[Outcome[Snapshot]]:
    """Write `tables`' snapshots of `day`, up to `max_concurrent` at once; yield each outcome as it
    ends. A table whose job waits on one not in `tables` reads that one's existing partition."""
    def job(table: FeatureTable) -> Snapshot:
        start = time.perf_counter()
        path = write_snapshot(spark, lake_dir, table, day)
        return Snapshot(path, round(time.perf_counter() - start, 2))

    jobs = {t.name: (lambda t=t: job(t)) for t in tables}
    return run_job_graph(jobs, READS_SNAPSHOTS, max_concurrent=max_concurrent)
