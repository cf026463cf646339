"""Ingest one landing day of one log into the lake: read, validate, dedupe, write, count.

Loupe reads the landing files itself first (`landing.read_day`): it counts every physical line,
independently of Spark, quarantines the lines Spark must not judge (bad UTF-8, over-long) and decides
what Spark reads, by exact path. `rows_read` is that count, so a line Spark never read shows up as
read != landed + quarantined + duplicates instead of passing unseen.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.dataset as pads
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data import columns as c
from data import id_map, lake
from data.contracts import CONTRACTS, REFERENCED_IDS, LogContract
from data.ingest import landing
from data.ingest import validation as v
from data.ingest.config import IngestConfig, load_ingest_config
from data.spark import read_lake
from data.vocabulary import Vocabulary, load_vocabulary

TOP_UNKNOWN_VALUES = 20  # per enum column: the most frequent values a report names


class IngestError(Exception):
    """A partition that cannot be ingested: the message names the file or input at fault."""


@dataclass
class IngestReport:
    log_type: str
    day: str
    files: list[str]  # the landing files read
    rows_read: int = 0  # physical lines of those files, counted by Loupe (not by Spark)
    rows_landed: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    # enum column -> value -> rows quarantined as bad_enum:<column> with it (what to add to the
    # vocabulary, or to fix in the export)
    unknown_enum_values: dict[str, dict[str, int]] = field(default_factory=dict)
    # landing entries not read, path -> reason: another name, a folder, a link out of the landing
    # folder (ignored); a binary or unreadable file, quarantined whole (rejected)
    files_ignored: dict[str, str] = field(default_factory=dict)
    files_rejected: dict[str, str] = field(default_factory=dict)
    lake_path: str = ""
    quarantine_path: str = ""
    id_map_path: str = ""

    @property
    def rows_accounted(self) -> int:
        return self.rows_landed + self.rows_quarantined + self.duplicates_dropped

    @property
    def quarantine_rows(self) -> int:
        """Rows the quarantine partition holds: one per quarantined line, one per rejected file."""
        return self.rows_quarantined + len(self.files_rejected)

    @property
    def files_not_read(self) -> dict[str, str]:
        return {**self.files_ignored, **self.files_rejected}

    @property
    def reconciles(self) -> bool:
        """Every line read is accounted for, and every entry of the day folder was read."""
        return self.rows_read == self.rows_accounted and not self.files_not_read


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


def scratch_dir(lake_dir: Path, log_type: str, day: str) -> Path:
    """Loupe's own scratch folder for one (log, day): landing lines copied under safe names, lines
    quarantined before Spark. Emptied at the start of a run and removed at its end."""
    return Path(lake_dir) / "_scratch" / "ingest" / log_type / day


def spark_lines(spark: SparkSession, sources: list[landing.SparkSource]) -> DataFrame:
    """The lines Spark reads (`value`, `source_file`): each source by its exact path, split at "\\n"
    only (as Loupe counted them), a "\\r" before the "\\n" dropped, traced to its landing file."""
    if not sources:  # an export that landed an empty folder: an empty, still reconciled, partition
        return spark.createDataFrame([], "value string, source_file string")
    # Safe paths (landing.SPARK_SAFE_PATH) come back as themselves behind the "file:" scheme.
    read_from = F.regexp_replace(F.col("_metadata.file_path"), "^file:(//)?", "")
    landing_file = F.create_map(*[F.lit(x) for s in sources for x in (s.spark_path, s.source_file)])
    value = F.col("value")
    return spark.read.text([s.spark_path for s in sources], lineSep="\n").select(
        F.when(value.endswith("\r"), value.substr(F.lit(1), F.length(value) - 1)).otherwise(value).alias("value"),
        F.coalesce(
            landing_file[read_from],
            F.raise_error(
                F.concat(F.lit("ingest: Spark read a file it was not handed: "), F.col("_metadata.file_path"))
            ),
        ).alias(c.SOURCE_FILE),
    )


def ingest_partition(
    spark: SparkSession,
    log_type: str,
    day: str,
    landing_dir: Path,
    lake_dir: Path,
    vocabulary: Vocabulary | None = None,
    config: IngestConfig | None = None,
) -> IngestReport:
    """Ingest one (log, landing day); `vocabulary` None is the shipped one (the assets pass the
    workspace's), `config` None the shipped ingest config. Writes the lake, quarantine and id-map
    partitions, replacing any earlier run's. A binary or unreadable file does not stop the day: it
    is quarantined whole and named in `files_rejected`, and the report does not reconcile."""
    contract = CONTRACTS[log_type]
    vocabulary = vocabulary or load_vocabulary()
    config = config or load_ingest_config()
    known = _known_ids(spark, lake_dir, contract, day)
    scratch = scratch_dir(lake_dir, log_type, day)
    # A log the export does not carry that day (a team without a blocks log, a graph-only export)
    # lands as an empty partition: 0 read, 0 landed, and the rest of the house reads "nothing".
    try:
        read = landing.read_day(
            lake.landing_day_dir(landing_dir, log_type, day), landing_dir, scratch, config.max_line_bytes
        )
    except (landing.ScratchError, OSError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise IngestError(f"{log_type} {day}: {exc}") from exc
    try:
        return _land(spark, contract, day, lake_dir, vocabulary, known, read)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _land(
    spark: SparkSession,
    contract: LogContract,
    day: str,
    lake_dir: Path,
    vocabulary: Vocabulary,
    known: dict[str, DataFrame],
    read: landing.LandingDay,
) -> IngestReport:
    """Validate, dedupe and write what `read` hands Spark, and count every outcome."""
    log_type = contract.name
    report = IngestReport(log_type, day, read.files, rows_read=read.rows_read,
                          files_ignored=read.ignored, files_rejected=read.rejected)
    report.lake_path = str(lake.partition_dir(lake_dir, log_type, day))
    report.quarantine_path = str(lake.quarantine_dir(lake_dir, log_type, day))
    report.id_map_path = str(id_map.partition_dir(lake_dir, log_type, day))

    rows = v.parse_lines(spark_lines(spark, read.spark_sources), contract, day, vocabulary)
    rows = v.check_references(rows, contract, known)
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
        # Lines judged before Spark (bad_encoding, line_too_long); rows_read stays Loupe's count.
        report.rows_quarantined += sum(read.quarantined_by_reason.values())
        for reason, n in read.quarantined_by_reason.items():
            report.quarantined_by_reason[reason] = report.quarantined_by_reason.get(reason, 0) + n
        report.unknown_enum_values = {
            column: dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_UNKNOWN_VALUES])
            for column, values in report.unknown_enum_values.items()
        }
        # Overwrite the whole partition: re-running a day replaces it, never appends.
        v.landed_rows(rows, contract).write.mode("overwrite").parquet(report.lake_path)
        quarantined = v.quarantined_rows(rows)
        if read.quarantine_files:
            quarantined = quarantined.unionByName(
                spark.read.schema(quarantined.schema).parquet(*read.quarantine_files))
        quarantined.coalesce(1).write.mode("overwrite").parquet(report.quarantine_path)
        with id_map.WRITE_LOCK:  # another log's collision check may be reading the whole id map
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
