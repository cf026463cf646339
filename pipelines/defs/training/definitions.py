"""Training domain: training sets, rankers per surface, evaluation, promotion, simulated A/B,
off-policy evaluation."""

import dagster as dg

from pipelines.defs.training.assets import training_assets
from pipelines.defs.training.checks import served_features_match_training
from pipelines.defs.training.jobs import training_job
from pipelines.defs.training.ope_assets import ope_assets

defs = dg.Definitions(assets=[*training_assets, *ope_assets], asset_checks=[served_features_match_training],
                      jobs=[training_job])
