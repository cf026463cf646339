"""Dagster entry point: merges each domain's definitions, binds resources from settings and adds
the automation that runs a landed day through (pipelines/automation.py).

Each domain is laid out as dagster-open-platform does, one file per role in
pipelines/defs/<domain>/ (assets.py, checks.py, jobs.py, sensors.py, resources.py), put together by
its definitions.py. `dagster dev -m pipelines.definitions` (see README) serves exactly this.
"""

import dagster as dg

from data.settings import get_settings
from pipelines.automation import automate
from pipelines.defs.candidates import definitions as candidates
from pipelines.defs.features import definitions as features
from pipelines.defs.ingest import definitions as ingest
from pipelines.defs.training import definitions as training
from pipelines.resources import build_resources


def build_definitions(resources: dict) -> dg.Definitions:
    """Every domain's assets, checks, jobs and sensors on `resources`, automated (the training
    window's length is the configured training config's)."""
    train_days = resources["training_config"].load().train_days
    return automate(dg.Definitions.merge(
        ingest.defs, features.defs, training.defs, candidates.defs, dg.Definitions(resources=resources),
    ), train_days)


defs = build_definitions(build_resources(get_settings()))
