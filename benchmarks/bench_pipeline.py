"""bench-pipeline: generate the medium world and ingest it; wall time per stage and peak memory.

Beside ingestion, in the same run: its ceiling, Spark itself reading the same landing JSON (typed
by the contracts) and writing it as Parquet, with no validation, counting or dedupe.

Runs in the benchmarks' workspace (LOUPE_HOME/bench/medium, regenerated here and kept for the
other benchmarks) on an ephemeral Dagster instance, so it never touches the world `make run` keeps.
Peak RSS covers the whole process tree (Python + Spark JVM).
"""

from __future__ import annotations

import json
import shutil
import time

import dagster as dg

from benchmarks.common import PeakRss, stopwatch, write_result
from benchmarks.workspace import WORLD, bench_settings
from data import lake
from data.contracts import CONTRACTS, LOG_TYPES
from data.spark import lake_schema
from data.world import generate_world
from pipelines.operations import ingest_days
from pipelines.resources import build_resources
from pipelines.summary import format_ingest_table


def spark_ceiling(settings, days: list[str]) -> float:
    """Seconds for Spark to read every landing file of `days` and write it as Parquet, untouched."""
    spark = build_resources(settings)["spark"].session()
    out = settings.home / "_ceiling"
    start = time.perf_counter()
    for log in LOG_TYPES:
        paths = [str(p) for d in days if (p := lake.landing_day_dir(settings.landing_dir, log, d)).is_dir()]
        if paths:
            spark.read.schema(lake_schema(CONTRACTS[log])).json(paths).write.mode("overwrite").parquet(str(out / log))
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def main() -> None:
    settings = bench_settings()
    shutil.rmtree(settings.home, ignore_errors=True)
    stages: dict[str, float] = {}
    start = time.perf_counter()
    with PeakRss() as rss:
        with stopwatch(stages, "generate_s"):
            summary = generate_world(WORLD, settings.seed, settings.landing_dir, settings.truth_dir)
            (settings.world_dir / "world.json").write_text(json.dumps(summary.to_dict(), indent=2))
        with stopwatch(stages, "ingest_s"), dg.DagsterInstance.ephemeral() as instance:
            totals = ingest_days(settings, summary.days, instance)
        with stopwatch(stages, "ingest_ceiling_s"):
            spark_ceiling(settings, summary.days)
    wall = round(time.perf_counter() - start, 2)
    print(format_ingest_table(totals))
    write_result(
        "pipeline",
        {
            "world": WORLD,
            "events": summary.events,
            "wall_s": wall,
            "stages": stages,
            "peak_rss_mb": rss.peak_mb,
            "rows": {log: t["rows_read"] for log, t in totals.items()},
            "landed": {log: t["rows_landed"] for log, t in totals.items()},
            "quarantined": {log: t["quarantined_by_reason"] for log, t in totals.items()},
            "duplicates_dropped": {log: t["duplicates_dropped"] for log, t in totals.items()},
            "days": len(summary.days),
            "events_per_s_ingest": round(summary.events / stages["ingest_s"]),
            "ingest_s": stages["ingest_s"],
            "ingest_events_per_s": round(summary.events / stages["ingest_s"]),
            "ingest_ceiling_events_per_s": round(summary.events / stages["ingest_ceiling_s"]),
            "ingest_of_ceiling": round(stages["ingest_ceiling_s"] / stages["ingest_s"], 2),
        },
    )


if __name__ == "__main__":
    main()
