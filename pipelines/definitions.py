"""Dagster entry point: merges each domain's definitions and binds resources from settings.

`dagster dev -m pipelines.definitions` (see README) serves exactly this.
"""

import dagster as dg

from data.settings import get_settings
from pipelines.defs import candidates, features, ingest, training
from pipelines.resources import build_resources

defs = dg.Definitions.merge(
    ingest.defs,
    features.defs,
    training.defs,
    candidates.defs,
    dg.Definitions(resources=build_resources(get_settings())),
)
