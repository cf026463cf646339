"""Ingestion domain: landing JSONL -> validated Parquet lake, quarantine, reconcile checks."""

import dagster as dg

from pipelines.defs.ingest.assets import ingest_assets, stream_events
from pipelines.defs.ingest.jobs import ingest_job
from pipelines.defs.ingest.sensors import landing_sensor, stream_archive_sensor

defs = dg.Definitions(
    assets=[*ingest_assets, stream_events],
    jobs=[ingest_job],
    sensors=[landing_sensor, stream_archive_sensor],
)
