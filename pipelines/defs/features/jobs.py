"""Features jobs."""

import dagster as dg

from pipelines.defs.features.assets import GROUP, REGISTRY_KEY

features_job = dg.define_asset_job(
    "features_job",
    selection=dg.AssetSelection.groups(GROUP) - dg.AssetSelection.assets(REGISTRY_KEY),
    description="One day's feature snapshots and their materialization into the online store.",
)
