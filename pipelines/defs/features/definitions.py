"""Features domain: Spark feature tables per day -> Feast registry -> Redis online store."""

import dagster as dg

from pipelines.defs.features.assets import feast_online, feast_registry, feature_assets

features_job = dg.define_asset_job(
    "features_job",
    selection=dg.AssetSelection.groups("features") - dg.AssetSelection.assets(["feast", "registry"]),
    description="One day's feature snapshots and their materialization into the online store.",
)

defs = dg.Definitions(assets=[*feature_assets, feast_registry, feast_online], jobs=[features_job])
