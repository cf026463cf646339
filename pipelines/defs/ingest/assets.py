"""One lake asset per log contract, partitioned by landing day, with its checks beside it: the counts
reconcile, and no two exported ids were mapped to one int64 id."""


import dagster as dg

from data import id_map
from data.contracts import CONTRACTS, LogContract
from data.ingest.partition import IngestError, ingest_partition, lake_row_count
from pipelines.partitions import day_partitions
from pipelines.resources import SparkResource, WorkspaceResource

GROUP = "ingest"


def lake_key(log_type: str) -> dg.AssetKey:
    return dg.AssetKey(["lake", log_type])


def build_ingest_asset(contract: LogContract) -> dg.AssetsDefinition:
    key = lake_key(contract.name)
    reconciles = dg.AssetCheckSpec(
        "reconciles",
        asset=key,
        blocking=True,  # features must never build on a partition whose counts do not add up
        description="rows read (every physical line of every landing file, counted by Loupe, not "
        "by Spark) = landed + quarantined + duplicates dropped; every entry of the day folder was "
        "read (none ignored or rejected); the lake and quarantine partitions read back hold exactly "
        "the landed and quarantined rows",
    )
    ids_distinct = dg.AssetCheckSpec(
        "ids_distinct",
        asset=key,
        blocking=True,  # two accounts (or posts) merged under one id would corrupt every feature
        description="no id this partition landed was mapped from two different exported ids (two "
        "strings hashing alike, or a string and a native integer id): lake/id_map, data/ids.py",
    )

    @dg.asset(
        key=key,
        group_name=GROUP,
        partitions_def=day_partitions,
        deps=[lake_key(log) for log in sorted(set(contract.references.values()))],
        check_specs=[reconciles, ids_distinct],
        kinds={"spark", "parquet"},
        description=f"The {contract.name} log of one landing day, validated against its contract "
        "(data/contracts.py); bad lines quarantined with a reason, duplicates dropped.",
    )
    def _ingest(
        context: dg.AssetExecutionContext, spark: SparkResource, workspace: WorkspaceResource
    ) -> dg.MaterializeResult:
        day = context.partition_key
        session = spark.session()
        try:
            report = ingest_partition(
                session, contract.name, day, workspace.landing, workspace.lake, workspace.vocabulary()
            )
        except IngestError as exc:
            raise dg.Failure(description=str(exc)) from exc
        in_lake = lake_row_count(report.lake_path)
        in_quarantine = lake_row_count(report.quarantine_path)
        passed = report.reconciles and in_lake == report.rows_landed and in_quarantine == report.quarantine_rows
        collisions = id_map.collisions(workspace.lake, contract.name, day)
        context.log.info(
            f"{contract.name} {day}: read {report.rows_read}, landed {report.rows_landed}, "
            f"quarantined {report.rows_quarantined} {report.quarantined_by_reason}, "
            f"duplicates {report.duplicates_dropped}"
        )
        if report.unknown_enum_values:
            context.log.warning(
                f"{contract.name} {day}: values outside the contract or the log vocabulary "
                f"({workspace.vocabulary().source}) were quarantined: {report.unknown_enum_values}"
            )
        for path, reason in report.files_ignored.items():
            context.log.error(f"{contract.name} {day}: not read, ignored: {path}: {reason}")
        for path, reason in report.files_rejected.items():
            context.log.error(f"{contract.name} {day}: not read, quarantined whole: {path}: {reason}")
        if report.rows_read != report.rows_accounted:
            context.log.error(
                f"{contract.name} {day}: {report.rows_read} lines read but {report.rows_accounted} "
                "landed, quarantined or dropped as duplicates"
            )
        for collision in collisions:
            context.log.error(f"{contract.name} {day}: id collision {collision}")
        return dg.MaterializeResult(
            metadata={
                "rows_read": report.rows_read,
                "rows_landed": report.rows_landed,
                "rows_quarantined": report.rows_quarantined,
                "duplicates_dropped": report.duplicates_dropped,
                "quarantined_by_reason": report.quarantined_by_reason,
                "unknown_enum_values": report.unknown_enum_values,
                "ids_mapped": lake_row_count(report.id_map_path),
                "source_files": report.files,
                # path -> why it was not read; either fails the reconciles check
                "files_ignored": report.files_ignored,
                "files_rejected": report.files_rejected,
                "lake_path": dg.MetadataValue.path(report.lake_path),
                "quarantine_path": dg.MetadataValue.path(report.quarantine_path),
                "dagster/row_count": report.rows_landed,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="reconciles",
                    passed=passed,
                    description=_reconcile_summary(report, in_lake, in_quarantine),
                    metadata={
                        "rows_read": report.rows_read,
                        "accounted": report.rows_accounted,
                        "rows_in_lake": in_lake,
                        "rows_in_quarantine": in_quarantine,
                        "files_not_read": len(report.files_not_read),
                        "files_ignored": report.files_ignored,
                        "files_rejected": report.files_rejected,
                    },
                ),
                dg.AssetCheckResult(
                    check_name="ids_distinct",
                    passed=not collisions,
                    metadata={
                        "collisions": len(collisions),
                        # the texts that met on one id: remap them in the export (docs/log_contracts.md)
                        "colliding_ids": collisions[:20],
                        "id_map_path": dg.MetadataValue.path(report.id_map_path),
                    },
                ),
            ],
        )

    return _ingest


def _reconcile_summary(report, in_lake: int, in_quarantine: int) -> str:
    """What the reconciles check found, in words: every failure names its numbers or its files."""
    faults = []
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


ingest_assets = [build_ingest_asset(contract) for contract in CONTRACTS.values()]
