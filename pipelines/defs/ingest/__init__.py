"""Ingestion domain: landing JSONL -> validated Parquet lake, quarantine, reconcile checks."""

import dagster as dg

from pipelines.defs.ingest.assets import ingest_assets
from pipelines.defs.ingest.sensors import ingest_job, ingest_schedule, landing_sensor

defs = dg.Definitions(
    assets=ingest_assets,
    jobs=[ingest_job],
    schedules=[ingest_schedule],
    sensors=[landing_sensor],
)
