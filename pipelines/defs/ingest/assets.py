"""One daily-partitioned lake asset per log contract, with its reconcile check beside it."""


import dagster as dg

from data.contracts import CONTRACTS, LogContract
from pipelines.defs.ingest.ingest import IngestError, ingest_partition, lake_row_count
from pipelines.partitions import daily_partitions
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
        description="rows read = landed + quarantined + duplicates dropped, and the lake "
        "partition read back holds exactly the landed rows",
    )

    @dg.asset(
        key=key,
        group_name=GROUP,
        partitions_def=daily_partitions,
        deps=[lake_key(log) for log in sorted(set(contract.references.values()))],
        check_specs=[reconciles],
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
            report = ingest_partition(session, contract.name, day, workspace.landing, workspace.lake)
        except IngestError as exc:
            raise dg.Failure(description=str(exc)) from exc
        in_lake = lake_row_count(report.lake_path)
        passed = report.reconciles and in_lake == report.rows_landed
        context.log.info(
            f"{contract.name} {day}: read {report.rows_read}, landed {report.rows_landed}, "
            f"quarantined {report.rows_quarantined} {report.quarantined_by_reason}, "
            f"duplicates {report.duplicates_dropped}"
        )
        return dg.MaterializeResult(
            metadata={
                "rows_read": report.rows_read,
                "rows_landed": report.rows_landed,
                "rows_quarantined": report.rows_quarantined,
                "duplicates_dropped": report.duplicates_dropped,
                "quarantined_by_reason": report.quarantined_by_reason,
                "source_files": report.files,
                "lake_path": dg.MetadataValue.path(report.lake_path),
                "quarantine_path": dg.MetadataValue.path(report.quarantine_path),
                "dagster/row_count": report.rows_landed,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="reconciles",
                    passed=passed,
                    metadata={
                        "rows_read": report.rows_read,
                        "accounted": report.rows_landed
                        + report.rows_quarantined
                        + report.duplicates_dropped,
                        "rows_in_lake": in_lake,
                    },
                )
            ],
        )

    return _ingest


ingest_assets = [build_ingest_asset(contract) for contract in CONTRACTS.values()]
