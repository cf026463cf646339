"""Ingest one landing day of one log into the lake: read, validate, dedupe, write, count."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.dataset as pads
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data import columns as c
from data import id_map, lake
from data.contracts import CONTRACTS, REFERENCED_IDS, LogContract
from data.spark import read_lake
from data.vocabulary import Vocabulary, load_vocabulary
from pipelines.defs.ingest import validation as v


TOP_UNKNOWN_VALUES = 20  # per enum column: the most frequent values a report names


class IngestError(Exception):
    """A partition that cannot be ingested: the message names the file or input at fault."""


@dataclass
class IngestReport:
    log_type: str
    day: str
    files: list[str]
    rows_read: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    # enum column -> value -> rows quarantined as bad_enum:<column> with it (what to add to the
    # vocabulary, or to fix in the export)
    unknown_enum_values: dict[str, dict[str, int]] = field(default_factory=dict)
    lake_path: str = ""
    quarantine_path: str = ""
    id_map_path: str = ""

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_landed + self.rows_quarantined + self.duplicates_dropped


def assert_readable(path: Path) -> None:
    """Fail loudly on a file Spark would read as garbage or not at all (binary, unreadable)."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            head = handle.read(8192)
    except (OSError, EOFError) as exc:
        raise IngestError(f"cannot read landing file {path}: {exc}") from exc
    if b"\x00" in head:
        raise IngestError(f"landing file {path} is binary, not newline-delimited JSON")


def _known_ids(spark: SparkSession, lake_dir: Path, contract: LogContract, day: str) -> dict[str, DataFrame]:
    """Ids each reference may point at: everything the referenced log landed up to `day`."""
    known = {}
    for log in sorted(set(contract.references.values())):
        days = [d for d in lake.partition_days(lake_dir, log) if d <= day]
        if day not in days:
            raise IngestError(
                f"{contract.name} {day} needs {lake.partition_dir(lake_dir, log, day)}, "
                f"which is missing: ingest {log} for {day} first"
            )
        known[log] = read_lake(spark, lake_dir, log, days).select(REFERENCED_IDS[log])
    return known


def _seen_keys(spark: SparkSession, lake_dir: Path, contract: LogContract, day: str) -> DataFrame | None:
    """Keys landed on earlier days; event logs look back only as far as an event may be late."""
    earlier = [d for d in lake.partition_days(lake_dir, contract.name) if d < day]
    if contract.max_age_days is not None:
        earlier = earlier[-(contract.max_age_days + 1) :]
    frame = read_lake(spark, lake_dir, contract.name, earlier)
    return None if frame is None else frame.select(*contract.key)


def ingest_partition(
    spark: SparkSession,
    log_type: str,
    day: str,
    landing_dir: Path,
    lake_dir: Path,
    vocabulary: Vocabulary | None = None,
) -> IngestReport:
    """Ingest one (log, landing day); `vocabulary` None is the shipped one (the assets pass the
    workspace's). Writes the lake, quarantine and id-map partitions, replacing any earlier run's."""
    contract = CONTRACTS[log_type]
    vocabulary = vocabulary or load_vocabulary()
    folder = lake.landing_day_dir(landing_dir, log_type, day)
    files = lake.landing_files(landing_dir, log_type, day)
    # A log the export does not carry that day (a team without a blocks log, a graph-only export)
    # lands as an empty partition: 0 read, 0 landed, and the rest of the house reads "nothing".
    for path in files:
        assert_readable(path)
    report = IngestReport(log_type, day, [str(p) for p in files])
    report.lake_path = str(lake.partition_dir(lake_dir, log_type, day))
    report.quarantine_path = str(lake.quarantine_dir(lake_dir, log_type, day))
    report.id_map_path = str(id_map.partition_dir(lake_dir, log_type, day))

    if files:
        lines = spark.read.text([str(p) for p in files]).withColumn(
            c.SOURCE_FILE, F.col("_metadata.file_path")
        )
    else:  # an export that landed an empty folder: an empty, still reconciled, partition
        lines = spark.createDataFrame([], "value string, source_file string")
    rows = v.parse_lines(lines, contract, day, vocabulary)
    rows = v.check_references(rows, contract, _known_ids(spark, lake_dir, contract, day))
    rows = v.assign_status(rows, contract, _seen_keys(spark, lake_dir, contract, day))
    rows = rows.persist()
    try:
        # One pass counts every status and reason, each bad enum value, and rows with a mapped id.
        mapped = 0
        for row in rows.groupBy(v.STATUS, c.REASON, v.BAD_ENUM_VALUE, v.MAPPED).count().collect():
            status, reason, n = row[v.STATUS], row[c.REASON], row["count"]
            if status in (v.LANDED, v.DUPLICATE) and row[v.MAPPED]:
                mapped += n
            if status == v.LANDED:
                report.rows_landed += n
            elif status == v.DUPLICATE:
                report.duplicates_dropped += n
            else:
                report.rows_quarantined += n
                report.quarantined_by_reason[reason] = report.quarantined_by_reason.get(reason, 0) + n
                if row[v.BAD_ENUM_VALUE] is not None:
                    column = reason.removeprefix("bad_enum:")
                    report.unknown_enum_values.setdefault(column, {})[row[v.BAD_ENUM_VALUE]] = n
        report.rows_read = report.rows_landed + report.rows_quarantined + report.duplicates_dropped
        report.unknown_enum_values = {
            column: dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_UNKNOWN_VALUES])
            for column, values in report.unknown_enum_values.items()
        }
        # Overwrite the whole partition: re-running a day replaces it, never appends.
        v.landed_rows(rows, contract).write.mode("overwrite").parquet(report.lake_path)
        v.quarantined_rows(rows).coalesce(1).write.mode("overwrite").parquet(report.quarantine_path)
        if mapped:
            v.id_map_rows(rows, contract).coalesce(1).write.mode("overwrite").parquet(report.id_map_path)
        else:  # native ids only (the common case): no Spark job for an empty map
            id_map.write_empty_partition(lake_dir, log_type, day)
    finally:
        rows.unpersist()
    return report


def lake_row_count(path: str) -> int:
    """Rows actually in a written partition, read back from the Parquet footers (reconcile check)."""
    return pads.dataset(path, format="parquet").count_rows()
