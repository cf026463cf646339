"""Training jobs."""

import dagster as dg

from pipelines.defs.training.assets import GROUP

training_job = dg.define_asset_job(
    "training_job", selection=dg.AssetSelection.groups(GROUP),
    description="Train, evaluate and (if it wins) promote both rankers for one test day.",
)
