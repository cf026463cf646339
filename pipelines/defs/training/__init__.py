"""Training domain: training sets, rankers per surface, evaluation, promotion, simulated A/B."""

import dagster as dg

from pipelines.defs.training.assets import training_assets, training_schedule

defs = dg.Definitions(assets=training_assets, schedules=[training_schedule])
