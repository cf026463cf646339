"""Ingest jobs."""

import dagster as dg

from pipelines.defs.ingest.assets import GROUP

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Validate one landing day of every log into the lake.",
)
