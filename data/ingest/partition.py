"""Ingest landing days of one log into the lake: read, validate, dedupe, write, count.

Many days are one Spark pass (a backfill, a first run): a few Spark jobs for all of them, each day
judged as if ingested alone after the ones before it (`validation.assign_status`), and written to
its own partition.

Loupe reads the landing files itself first (`landing.read_day`): it counts every physical line,
independently of Spark, quarantines the lines Spark must not judge (bad UTF-8, over-long) and decides
what Spark reads, by exact path. `rows_read` is that count, so a line Spark never read shows up as
read != landed + quarantined + duplicates instead of passing unseen.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from data import columns as c
from data import id_map, lake
from data.contracts import CONTRACTS, REFERENCED_IDS, LogContract
from data.ingest import landing
from data.ingest import validation as v
from data.ingest.config import IngestConfig, load_ingest_config
from data.spark import read_lake_days, spark_type
from data.vocabulary import Vocabulary, load_vocabulary

TOP_UNKNOWN_VALUES = 20  # per enum column: the most frequent values a report names
# A quarantine partition's columns (`validation.quarantined_rows`, and landing.py's before Spark).
QUARANTINE_COLUMNS = T.StructType([T.StructField(f.name, spark_type(f.type)) for f in landing.QUARANTINE_SCHEMA])


class IngestError(Exception):
    """A partition that cannot be ingested: the message names the file or input at fault."""


@dataclass
class IngestReport:
    log_type: str
    day: str
    files: list[str]  # the landing files read
    rows_read: int = 0  # physical lines of those files, counted by Loupe (not by Spark)
    lines_per_file: dict[str, int] = field(default_factory=dict)  # the same count, per file read
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


def _known_ids(spark: SparkSession, lake_dir: Path, contract: LogContract, days: list[str]) -> dict[str, DataFrame]:
    """Ids each reference may point at, each with the first day it landed on (`KNOWN_SINCE`): what
    the referenced log landed up to the last of `days` (a row may reference its own day or before)."""
    known = {}
    for log in sorted(set(contract.references.values())):
        landed = lake.partition_days(lake_dir, log)
        missing = [d for d in days if d not in landed]
        if missing:
            raise IngestError(
                f"{contract.name} {missing[0]} needs {lake.partition_dir(lake_dir, log, missing[0])}, "
                f"which is missing: ingest {log} for {missing[0]} first"
            )
        frame = read_lake_days(spark, lake_dir, log, [d for d in landed if d <= days[-1]])
        known[log] = frame.groupBy(REFERENCED_IDS[log]).agg(F.min(c.DT).alias(v.KNOWN_SINCE))
    return known


def _look_back(lake_dir: Path, contract: LogContract, days: list[str]) -> tuple[list[str], list[str]]:
    """Every day of the log up to the last of `days` (the lake's and the pass's, sorted), and the
    lake days the pass looks back on without rewriting them: all earlier days for a snapshot log,
    the `max_age_days` + 1 before each pass day for an event log."""
    order = sorted({d for d in lake.partition_days(lake_dir, contract.name) if d <= days[-1]} | set(days))
    first = 0 if contract.max_age_days is None else max(0, order.index(days[0]) - contract.max_age_days - 1)
    pass_days = set(days)
    lake_days = [d for d in order[first:] if d not in pass_days]
    return order, lake_days


def scratch_dir(lake_dir: Path, log_type: str, day: str) -> Path:
    """Loupe's own scratch folder for one (log, day): landing lines copied under safe names, lines
    quarantined before Spark. Emptied at the start of a run and removed at its end."""
    return Path(lake_dir) / "_scratch" / "ingest" / log_type / day


def written_dir(lake_dir: Path, log_type: str) -> Path:
    """Where one pass over a log writes its partitions (per `dt`) before they replace the lake's."""
    return Path(lake_dir) / "_scratch" / "ingest" / log_type / "_written"


def spark_lines(spark: SparkSession, sources: dict[str, list[landing.SparkSource]]) -> v.LandingLines:
    """The lines Spark reads of each landing day's sources: each by its exact path, split at "\\n"
    only (as Loupe counted them), a "\\r" before the "\\n" dropped, traced to its landing file and
    day (`LandingLines.sources`)."""
    every = [(day, s) for day, day_sources in sources.items() for s in day_sources]
    if not every:  # an export that landed empty folders: empty, still reconciled, partitions
        return v.LandingLines(spark.createDataFrame([], f"value string, {v.SOURCE} int"), [])
    # Safe paths (landing.SPARK_SAFE_PATH) come back as themselves behind the "file:" scheme.
    read_from = F.regexp_replace(F.col("_metadata.file_path"), "^file:(//)?", "")
    index = F.create_map(*[x for i, (_, s) in enumerate(every) for x in (F.lit(s.spark_path), F.lit(i))])
    value = F.col("value")
    frame = spark.read.text([s.spark_path for _, s in every], lineSep="\n").select(
        F.when(value.endswith("\r"), value.substr(F.lit(1), F.length(value) - 1)).otherwise(value).alias("value"),
        F.coalesce(
            index[read_from],
            F.raise_error(
                F.concat(F.lit("ingest: Spark read a file it was not handed: "), F.col("_metadata.file_path"))
            ),
        ).alias(v.SOURCE),
    )
    return v.LandingLines(frame, [(s.source_file, day) for day, s in every])


def ingest_partition(
    spark: SparkSession,
    log_type: str,
    day: str,
    landing_dir: Path,
    lake_dir: Path,
    vocabulary: Vocabulary | None = None,
    config: IngestConfig | None = None,
) -> IngestReport:
    """Ingest one (log, landing day): `ingest_log_days` of that day alone."""
    return ingest_log_days(spark, log_type, [day], landing_dir, lake_dir, vocabulary, config)[day]


def ingest_log_days(
    spark: SparkSession,
    log_type: str,
    days: list[str],
    landing_dir: Path,
    lake_dir: Path,
    vocabulary: Vocabulary | None = None,
    config: IngestConfig | None = None,
) -> dict[str, IngestReport]:
    """Ingest landing days of one log in one Spark pass (a few jobs, whatever the number of days),
    each day judged exactly as ingesting the days one by one, in order, would. `vocabulary` None is
    the shipped one (the assets pass the workspace's), `config` None the shipped ingest config.
    Writes each day's lake, quarantine and id-map partitions, replacing any earlier run's. A binary
    or unreadable file does not stop its day: it is quarantined whole and named in
    `files_rejected`, and that day's report does not reconcile."""
    contract = CONTRACTS[log_type]
    days = sorted(set(days))
    vocabulary = vocabulary or load_vocabulary()
    config = config or load_ingest_config()
    known = _known_ids(spark, lake_dir, contract, days)
    reads: dict[str, landing.LandingDay] = {}
    try:
        # A log the export does not carry that day (a team without a blocks log, a graph-only export)
        # lands as an empty partition: 0 read, 0 landed, and the rest of the house reads "nothing".
        for day in days:
            try:
                reads[day] = landing.read_day(lake.landing_day_dir(landing_dir, log_type, day), landing_dir,
                                              scratch_dir(lake_dir, log_type, day), config.max_line_bytes)
            except (landing.ScratchError, OSError) as exc:
                raise IngestError(f"{log_type} {day}: {exc}") from exc
        return _land(spark, contract, lake_dir, vocabulary, known, reads)
    finally:
        for day in days:
            shutil.rmtree(scratch_dir(lake_dir, log_type, day), ignore_errors=True)
        shutil.rmtree(written_dir(lake_dir, log_type), ignore_errors=True)


def _land(
    spark: SparkSession,
    contract: LogContract,
    lake_dir: Path,
    vocabulary: Vocabulary,
    known: dict[str, DataFrame],
    reads: dict[str, landing.LandingDay],
) -> dict[str, IngestReport]:
    """Validate, dedupe and write what `reads` hand Spark, and count every outcome, per day."""
    log_type, days = contract.name, sorted(reads)
    reports = {
        day: IngestReport(log_type, day, read.files, rows_read=read.rows_read, lines_per_file=dict(read.lines),
                          files_ignored=read.ignored,
                          files_rejected=read.rejected, lake_path=str(lake.partition_dir(lake_dir, log_type, day)),
                          quarantine_path=str(lake.quarantine_dir(lake_dir, log_type, day)),
                          id_map_path=str(id_map.partition_dir(lake_dir, log_type, day)))
        for day, read in reads.items()
    }
    rows = v.parse_lines(spark_lines(spark, {d: r.spark_sources for d, r in reads.items()}), contract, vocabulary)
    rows = v.check_references(rows, contract, known)
    order, lake_days = _look_back(lake_dir, contract, days)
    earlier = read_lake_days(spark, lake_dir, log_type, lake_days)
    rows = v.assign_status(rows, contract, None if earlier is None else earlier.select(*contract.key, c.DT), order)
    # On disk, not in the heap: a backfill's rows carry their raw lines (for the quarantine), and
    # held deserialized they filled a 4 GB driver's heap on the medium world's 14 days (full GCs
    # back to back); the four passes over them read local disk instead.
    rows = rows.persist(StorageLevel.DISK_ONLY)
    try:
        # One pass counts every day's statuses and reasons, each bad enum value, and rows with a mapped id.
        mapped = False  # some valid row of some day has an id in the hashed range
        for row in rows.groupBy(c.DT, v.STATUS, c.REASON, v.BAD_ENUM_VALUE, v.MAPPED).count().collect():
            report, status, reason, n = reports[row[c.DT]], row[v.STATUS], row[c.REASON], row["count"]
            if status in (v.LANDED, v.DUPLICATE) and row[v.MAPPED]:
                mapped = True
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
        for day, report in reports.items():
            # Lines judged before Spark (bad_encoding, line_too_long); rows_read stays Loupe's count.
            before_spark = reads[day].quarantined_by_reason
            report.rows_quarantined += sum(before_spark.values())
            for reason, n in before_spark.items():
                report.quarantined_by_reason[reason] = report.quarantined_by_reason.get(reason, 0) + n
            report.unknown_enum_values = {
                column: dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_UNKNOWN_VALUES])
                for column, values in report.unknown_enum_values.items()
            }
        _write(spark, rows, contract, lake_dir, reads, mapped)
    finally:
        rows.unpersist()
    return reports


def _write(spark: SparkSession, rows: DataFrame, contract: LogContract, lake_dir: Path,
           reads: dict[str, landing.LandingDay], mapped: bool) -> None:
    """Write every day's partitions in one Spark job per kind (lake, quarantine, id map), then put
    each in place of the day's earlier partition: re-running a day replaces it, never appends."""
    log_type, days = contract.name, sorted(reads)
    written = written_dir(lake_dir, log_type)
    shutil.rmtree(written, ignore_errors=True)
    landed = v.landed_rows(rows, contract)
    landed.repartition(c.DT).write.partitionBy(c.DT).parquet(str(written / "lake"))
    quarantined = v.quarantined_rows(rows)
    before_spark = [spark.read.schema(QUARANTINE_COLUMNS).parquet(*read.quarantine_files).withColumn(c.DT, F.lit(day))
                    for day, read in reads.items() if read.quarantine_files]
    quarantined = reduce(DataFrame.unionByName, before_spark, quarantined)
    quarantined.repartition(c.DT).write.partitionBy(c.DT).parquet(str(written / "quarantine"))
    lake_schema = to_arrow_schema(landed.drop(c.DT).schema, timezone="UTC")
    for day in days:
        _replace(written / "lake" / f"{c.DT}={day}", lake.partition_dir(lake_dir, log_type, day), lake_schema)
        _replace(written / "quarantine" / f"{c.DT}={day}", lake.quarantine_dir(lake_dir, log_type, day),
                 landing.QUARANTINE_SCHEMA)
    if mapped:  # native ids only (the common case): no Spark job, every day's id map is empty
        v.id_map_rows(rows, contract).repartition(c.DT).write.partitionBy(c.DT).parquet(str(written / "id_map"))
    with id_map.WRITE_LOCK:  # another log's collision check may be reading the whole id map
        for day in days:
            _replace(written / "id_map" / f"{c.DT}={day}", id_map.partition_dir(lake_dir, log_type, day),
                     id_map.SCHEMA)


def _replace(written: Path, partition: Path, schema: pa.Schema) -> None:
    """Put one day's written folder in place of its partition, with Spark's `_SUCCESS` marker; a day
    Spark wrote no row for gets an empty Parquet file of `schema`, as Spark writes for an empty frame."""
    shutil.rmtree(partition, ignore_errors=True)
    partition.parent.mkdir(parents=True, exist_ok=True)
    if written.is_dir():
        written.rename(partition)
    else:
        partition.mkdir()
        pq.write_table(schema.empty_table(), partition / "part-00000.parquet")
    (partition / "_SUCCESS").touch()


def lake_row_count(path: str) -> int:
    """Rows actually in a written partition, read back from the Parquet footers (reconcile check)."""
    return pads.dataset(path, format="parquet").count_rows()
