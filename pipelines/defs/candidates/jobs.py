"""Candidates jobs."""

import dagster as dg

from pipelines.defs.candidates.assets import (
    candidates_embeddings,
    candidates_fanout,
    candidates_fatigue,
    candidates_integrity,
    candidates_search_index,
    candidates_social,
    candidates_stories,
    candidates_trending,
)

candidates_job = dg.define_asset_job(
    "candidates_job",
    selection=dg.AssetSelection.assets(
        candidates_fanout, candidates_trending, candidates_social, candidates_fatigue, candidates_integrity,
        candidates_embeddings, candidates_search_index, candidates_stories,
    ),
    description="The day's fan-out run (the lake's events; live publishes go on meanwhile), the "
    "Explore builders, the viewers' fatigue, the content labels, the post search index and the live stories.",
)
