"""Features domain: Spark feature tables per day -> Feast registry -> Redis online store."""

import dagster as dg

from pipelines.defs.features.assets import (
    feast_online,
    feast_registry,
    feature_assets,
    realtime_online,
    realtime_rows,
)
from pipelines.defs.features.jobs import features_job

defs = dg.Definitions(assets=[*feature_assets, realtime_rows, feast_registry, feast_online, realtime_online],
                      jobs=[features_job])
