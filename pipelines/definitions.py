"""Dagster entry point: merges each domain's definitions and binds resources from settings.

Each domain is laid out as dagster-open-platform does, one file per role in
pipelines/defs/<domain>/ (assets.py, checks.py, jobs.py, schedules.py, sensors.py, resources.py),
put together by its definitions.py. `dagster dev -m pipelines.definitions` (see README) serves
exactly this.
"""

import dagster as dg

from data.settings import get_settings
from pipelines.defs.candidates import definitions as candidates
from pipelines.defs.features import definitions as features
from pipelines.defs.ingest import definitions as ingest
from pipelines.defs.training import definitions as training
from pipelines.resources import build_resources

defs = dg.Definitions.merge(
    ingest.defs,
    features.defs,
    training.defs,
    candidates.defs,
    dg.Definitions(resources=build_resources(get_settings())),
)
