"""Running the ingest assets in tests (the session's tiny lake, and a second run over it)."""

from __future__ import annotations

from data.settings import Settings


def materialize_ingest(settings: Settings, days: list[str]) -> dict[str, dict]:
    """Run every ingest asset for every day; collect metadata and check results per log."""
    import dagster as dg

    from data.contracts import LOG_TYPES
    from pipelines.defs.ingest.assets import ingest_assets
    from pipelines.partitions import register_days
    from pipelines.resources import build_resources

    out = {log: {"meta": [], "checks": []} for log in LOG_TYPES}
    resources = build_resources(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        register_days(instance, days)
        for day in days:
            result = dg.materialize(ingest_assets, partition_key=day, instance=instance, resources=resources)
            assert result.success
            for event in result.get_asset_materialization_events():
                meta = {k: v.value for k, v in event.materialization.metadata.items()}
                out[event.asset_key.path[-1]]["meta"].append(meta)
            for check in result.get_asset_check_evaluations():
                out[check.asset_key.path[-1]]["checks"].append(check.passed)
    return out
