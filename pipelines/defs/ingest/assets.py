"""The lake assets, one per log contract, partitioned by landing day, with their checks beside them:
the counts reconcile, and no two exported ids were mapped to one int64 id.

All of them are one multi-asset: a run is one Dagster step that ingests its logs concurrently on
the shared SparkSession, each after the logs it references (data/job_graph.py). A small day is
latency-bound, so one step per log, one after another, mostly waited; a log whose checks fail still keeps
its dependents from landing on top of it, as the blocking checks did between steps.

A run may cover a range of days (a backfill, or `make run`'s first ingestion: BackfillPolicy
single_run): each log ingests all of them in one Spark pass (data/ingest/partition.py), each day
decided as it would be alone. Its metadata then sums the days and lists each (`days`), and a check
passes only if it passes on every day, naming the days it failed on.
"""

from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dagster as dg
from pyspark.sql import SparkSession

from data import id_map
from data.contracts import CONTRACTS
from data.ingest.fingerprints import landing_fingerprints
from data.ingest.partition import IngestError, IngestReport, ingest_log_days, lake_row_count
from data.job_graph import Outcome, run_job_graph
from data.stream.archiver import read_marks, stream_fault
from data.vocabulary import Vocabulary
from pipelines.job_steps import end_step
from pipelines.partitions import day_partitions
from pipelines.resources import SparkResource, WorkspaceResource

GROUP = "ingest"
RECONCILES = "reconciles"
IDS_DISTINCT = "ids_distinct"
LANDING_FINGERPRINTS = "landing_fingerprints"  # metadata: day -> the landing fingerprint a run read


def lake_key(log_type: str) -> dg.AssetKey:
    return dg.AssetKey(["lake", log_type])


def _checks(log_type: str) -> list[dg.AssetCheckSpec]:
    key = lake_key(log_type)
    return [
        dg.AssetCheckSpec(
            RECONCILES,
            asset=key,
            blocking=True,  # features must never build on a partition whose counts do not add up
            description="rows read (every physical line of every landing file, counted by Loupe, not "
            "by Spark) = landed + quarantined + duplicates dropped; every entry of the day folder was "
            "read (none ignored or rejected); the lake and quarantine partitions read back hold exactly "
            "the landed and quarantined rows; where the event stream archives into the landing folder, "
            "the day's stream files hold exactly the lines the archiver archived for it",
        ),
        dg.AssetCheckSpec(
            IDS_DISTINCT,
            asset=key,
            blocking=True,  # two accounts (or posts) merged under one id would corrupt every feature
            description="no id this partition landed was mapped from two different exported ids (two "
            "strings hashing alike, or a string and a native integer id): lake/id_map, data/ids.py",
        ),
    ]


@dataclass(frozen=True)
class Ingested:
    """One log's day, ingested and read back: what its metadata and checks are made of."""

    report: IngestReport
    in_lake: int
    in_quarantine: int
    ids_mapped: int
    collisions: list[dict]
    stream_fault: str | None = None  # the day's stream files against the archiver's count (data/stream)

    @property
    def reconciles(self) -> bool:
        report = self.report
        return (report.reconciles and self.in_lake == report.rows_landed
                and self.in_quarantine == report.quarantine_rows and self.stream_fault is None)

    @property
    def passed(self) -> bool:
        """Both blocking checks pass: only then may the logs referencing this one land on it."""
        return self.reconciles and not self.collisions


def ingest_log(
    session: SparkSession, log_type: str, days: list[str], workspace: WorkspaceResource, vocabulary: Vocabulary
) -> dict[str, Ingested]:
    """Ingest one log's days and read back what the checks need, per day (runs in a job-graph thread)."""
    reports = ingest_log_days(session, log_type, days, workspace.landing, workspace.lake, vocabulary)
    marks = read_marks(workspace.landing)  # the stream archiver's, if one lands into this folder
    return {
        day: Ingested(
            report,
            in_lake=lake_row_count(report.lake_path),
            in_quarantine=lake_row_count(report.quarantine_path),
            ids_mapped=lake_row_count(report.id_map_path),
            collisions=id_map.collisions(workspace.lake, log_type, day),
            stream_fault=stream_fault(marks, log_type, day, report.lines_per_file),
        )
        for day, report in reports.items()
    }


@dg.multi_asset(
    name="ingest_day",
    partitions_def=day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
    specs=[
        dg.AssetSpec(
            lake_key(contract.name),
            group_name=GROUP,
            deps=[lake_key(log) for log in sorted(set(contract.references.values()))],
            skippable=True,  # a log that failed, or whose references did not land, is not materialized
            kinds={"spark", "parquet"},
            description=f"The {contract.name} log of one landing day, validated against its contract "
            "(data/contracts.py); bad lines quarantined with a reason, duplicates dropped.",
        )
        for contract in CONTRACTS.values()
    ],
    check_specs=[spec for log_type in CONTRACTS for spec in _checks(log_type)],
)
def ingest_day(context: dg.AssetExecutionContext, spark: SparkResource, workspace: WorkspaceResource):
    days = sorted(context.partition_keys)
    # taken before reading: files that change meanwhile get a new fingerprint, and another run
    landed = landing_fingerprints(workspace.landing, days)
    fingerprints = {day: landed.get(day) for day in days}
    session = spark.session()
    vocabulary = workspace.vocabulary()
    selected = [log for log in CONTRACTS if lake_key(log) in context.selected_asset_keys]
    jobs = {log: partial(ingest_log, session, log, days, workspace, vocabulary) for log in selected}
    depends_on = {log: set(CONTRACTS[log].references.values()) for log in selected}
    outcomes: list[Outcome[dict[str, Ingested]]] = []
    # Jobs run in the graph's threads; Dagster's context (logging, events) is used only here.
    for outcome in run_job_graph(jobs, depends_on, max_concurrent=spark.concurrent_jobs,
                                 ok=lambda by_day: all(ingested.passed for ingested in by_day.values())):
        outcomes.append(outcome)
        if outcome.result is not None:
            for day, ingested in outcome.result.items():
                _log(context, outcome.name, day, ingested, vocabulary.source)
            yield _materialize_result(outcome.name, outcome.result, fingerprints)
    end_step(outcomes, IngestError, f"ingesting {days[0]}" + (f" .. {days[-1]}" if len(days) > 1 else ""))


def _log(context: dg.AssetExecutionContext, log_type: str, day: str, ingested: Ingested, vocabulary: str) -> None:
    report = ingested.report
    context.log.info(
        f"{log_type} {day}: read {report.rows_read}, landed {report.rows_landed}, "
        f"quarantined {report.rows_quarantined} {report.quarantined_by_reason}, "
        f"duplicates {report.duplicates_dropped}"
    )
    if report.unknown_enum_values:
        context.log.warning(
            f"{log_type} {day}: values outside the contract or the log vocabulary "
            f"({vocabulary}) were quarantined: {report.unknown_enum_values}"
        )
    for path, reason in report.files_ignored.items():
        context.log.error(f"{log_type} {day}: not read, ignored: {path}: {reason}")
    for path, reason in report.files_rejected.items():
        context.log.error(f"{log_type} {day}: not read, quarantined whole: {path}: {reason}")
    if report.rows_read != report.rows_accounted:
        context.log.error(
            f"{log_type} {day}: {report.rows_read} lines read but {report.rows_accounted} "
            "landed, quarantined or dropped as duplicates"
        )
    for collision in ingested.collisions:
        context.log.error(f"{log_type} {day}: id collision {collision}")


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for count in counts:
        total.update(count)
    return dict(total)


def _materialize_result(log_type: str, by_day: dict[str, Ingested],
                        fingerprints: dict[str, str | None]) -> dg.MaterializeResult:
    """One log's materialization for the run's days: one day's figures, or the days' sums and each
    day's (`days`); its checks pass when they pass on every day. `fingerprints`: each day's landing
    fingerprint as the run found it (the landing sensor's: a day already ingested as it is now is
    not asked for again by a sensor that starts without a cursor)."""
    key, days = lake_key(log_type), sorted(by_day)
    reports = [by_day[day].report for day in days]
    collisions = [collision for day in days for collision in by_day[day].collisions]
    one = reports[0] if len(days) == 1 else None

    def total(name: str) -> int:
        return sum(getattr(report, name) for report in reports)

    def where(path: str, table: Path) -> dg.MetadataValue:
        return dg.MetadataValue.path(path if one else str(table))

    ignored = {path: why for report in reports for path, why in report.files_ignored.items()}
    rejected = {path: why for report in reports for path, why in report.files_rejected.items()}
    failing = [day for day in days if not by_day[day].reconciles]
    summaries = {day: _reconcile_summary(by_day[day]) for day in days}
    if one:
        description = summaries[days[0]]
    else:
        description = "; ".join(f"{day}: {summaries[day]}" for day in failing) or (
            f"{len(days)} days, {total('rows_read')} lines read, each landed, quarantined or dropped as a duplicate")
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            "rows_read": total("rows_read"),
            "rows_landed": total("rows_landed"),
            "rows_quarantined": total("rows_quarantined"),
            "duplicates_dropped": total("duplicates_dropped"),
            "quarantined_by_reason": _summed([r.quarantined_by_reason for r in reports]),
            "unknown_enum_values": {
                column: _summed([r.unknown_enum_values.get(column, {}) for r in reports])
                for column in sorted({column for r in reports for column in r.unknown_enum_values})
            },
            "ids_mapped": sum(by_day[day].ids_mapped for day in days),
            "source_files": [path for report in reports for path in report.files],
            # path -> why it was not read; either fails the reconciles check
            "files_ignored": ignored,
            "files_rejected": rejected,
            "lake_path": where(reports[0].lake_path, Path(reports[0].lake_path).parent),
            "quarantine_path": where(reports[0].quarantine_path, Path(reports[0].quarantine_path).parent),
            LANDING_FINGERPRINTS: fingerprints,
            **({"dagster/row_count": one.rows_landed} if one else {"days": {
                day: {"rows_read": by_day[day].report.rows_read, "rows_landed": by_day[day].report.rows_landed,
                      "rows_quarantined": by_day[day].report.rows_quarantined,
                      "duplicates_dropped": by_day[day].report.duplicates_dropped} for day in days}}),
        },
        check_results=[
            dg.AssetCheckResult(
                asset_key=key,
                check_name=RECONCILES,
                passed=not failing,
                description=description,
                metadata={
                    "rows_read": total("rows_read"),
                    "accounted": sum(r.rows_accounted for r in reports),
                    "rows_in_lake": sum(by_day[day].in_lake for day in days),
                    "rows_in_quarantine": sum(by_day[day].in_quarantine for day in days),
                    "files_not_read": len(ignored) + len(rejected),
                    "files_ignored": ignored,
                    "files_rejected": rejected,
                    **({} if one else {"days_failing": failing}),
                },
            ),
            dg.AssetCheckResult(
                asset_key=key,
                check_name=IDS_DISTINCT,
                passed=not collisions,
                metadata={
                    "collisions": len(collisions),
                    # the texts that met on one id: remap them in the export (docs/log_contracts.md)
                    "colliding_ids": collisions[:20],
                    "id_map_path": where(reports[0].id_map_path, Path(reports[0].id_map_path).parent),
                },
            ),
        ],
    )


def _reconcile_summary(ingested: Ingested) -> str:
    """What the reconciles check found, in words: every failure names its numbers or its files."""
    report, in_lake, in_quarantine = ingested.report, ingested.in_lake, ingested.in_quarantine
    faults = [ingested.stream_fault] if ingested.stream_fault else []
    if report.rows_read != report.rows_accounted:
        faults.append(f"{report.rows_read} lines read, {report.rows_accounted} accounted for")
    if in_lake != report.rows_landed:
        faults.append(f"the lake holds {in_lake} rows, {report.rows_landed} landed")
    if in_quarantine != report.quarantine_rows:
        faults.append(f"the quarantine holds {in_quarantine} rows, {report.quarantine_rows} expected")
    faults += [f"not read (ignored): {path}: {why}" for path, why in report.files_ignored.items()]
    faults += [f"not read (quarantined whole): {path}: {why}" for path, why in report.files_rejected.items()]
    if not faults:
        return f"{report.rows_read} lines read, each landed, quarantined or dropped as a duplicate"
    return "; ".join(faults)


STREAM_KEY = dg.AssetKey(["stream", "events"])
stream_events = dg.AssetSpec(
    STREAM_KEY, group_name="ingest", kinds={"valkey"},
    description="The event stream (data/stream, docs/event_stream.md): served impressions, posts and graph "
    "changes as they happen. Observed by stream_archive_sensor every 30 s: entries held, each consumer "
    "group's backlog, and the groups whose backlog is growing.",
)

ingest_assets = [ingest_day]
