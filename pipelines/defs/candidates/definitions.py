"""Candidates domain: the fan-out worker's daily run, the rebuild from the lake, Explore sources."""

import dagster as dg

from pipelines.defs.candidates.assets import candidate_assets
from pipelines.defs.candidates.jobs import candidates_job

defs = dg.Definitions(assets=candidate_assets, jobs=[candidates_job])
