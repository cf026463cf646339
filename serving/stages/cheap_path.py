"""The cheap path's stand-ins for hydration and the model (serving.surfaces.cheap_pipeline): an
overloaded worker answers from the candidate records alone, so the page costs two Redis round trips
(sources, privacy filters) and a sort."""

from __future__ import annotations

from serving.heuristic import HeuristicScorer
from serving.pipeline import FeedQuery, FeedState

OVERLOAD = "overload"  # the response's `degraded` entry and `heuristic_reason` on the cheap path


class NoHydration:
    name = "no_hydration"

    def run(self, query: FeedQuery, state: FeedState) -> None:
        state.features = None

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.features = None


class RecencyScorer:
    """The heuristic on what the candidate records say: followed accounts first, newest first."""

    name = "recency_score"

    def __init__(self, heuristic: HeuristicScorer):
        self.heuristic = heuristic

    def run(self, query: FeedQuery, state: FeedState) -> None:
        state.scores = self.heuristic.score(state.candidates, query.now_ms)
        state.model_version, state.scorer, state.heuristic_reason = "heuristic", "heuristic", OVERLOAD

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.scores = None  # the selector serves newest first
