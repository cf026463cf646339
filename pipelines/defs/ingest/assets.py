"""One lake asset per log contract, partitioned by landing day, with its checks beside it: the counts
reconcile, and no two exported ids were mapped to one int64 id."""


import dagster as dg

from data import id_map
from data.contracts import CONTRACTS, LogContract
from pipelines.defs.ingest.ingest import IngestError, ingest_partition, lake_row_count
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
        description="rows read = landed + quarantined + duplicates dropped, and the lake "
        "partition read back holds exactly the landed rows",
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
        passed = report.reconciles and in_lake == report.rows_landed
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


ingest_assets = [build_ingest_asset(contract) for contract in CONTRACTS.values()]
