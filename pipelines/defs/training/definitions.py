"""Training domain: training sets, rankers per surface, evaluation, promotion, simulated A/B,
off-policy evaluation."""

import dagster as dg

from pipelines.defs.training.assets import training_assets, training_schedule
from pipelines.defs.training.ope_assets import ope_assets
from pipelines.defs.training.skew import served_features_match_training

defs = dg.Definitions(assets=[*training_assets, *ope_assets], asset_checks=[served_features_match_training],
                      schedules=[training_schedule])
