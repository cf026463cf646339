"""Feature hydrators: the ranking feature service for every candidate, as one float32 block.

`PackedFeatureHydrator` reads the packed view (one MGET, parity-tested with Feast's
get_online_features; features.online.ranking). `FeastFeatureHydrator` asks Feast itself (the naive
path the benchmark compares with). A hydrator that fails, or finds less budget left than the model
path needs (`budget.model_min_ms`), leaves the features out: the scorer then falls back to the
heuristic. Starting anyway would not rank the page by the model either (the score stage would find
the budget spent), but it would hold the worker's GIL well past the budget: under load that is
how admitted pages took 2-5x their budget (bench-overload) and slowed every page beside them.
"""

from __future__ import annotations

import numpy as np

from features.feature_repo.definitions import REQUEST_TS
from serving.pipeline import FeedQuery, FeedState

BUDGET_TOO_SHORT = "budget too short for the model"


class PackedFeatureHydrator:
    name = "hydrate"

    def __init__(self, reader, min_ms: float):
        self.reader = reader  # features.online.ranking.RankingFeatureReader
        self.min_ms = min_ms  # budget.model_min_ms

    def _read(self, query: FeedQuery, state: FeedState) -> tuple[tuple[str, ...], np.ndarray]:
        cands = state.candidates
        block = self.reader.read(np.full(len(cands), query.viewer_id, dtype=np.int64), cands.author, cands.post,
                                 query.now_ms / 1000.0)
        return tuple(block.names), block.values

    def run(self, query: FeedQuery, state: FeedState) -> None:
        if not len(state.candidates):
            return
        if query.deadline.remaining_ms() < self.min_ms:
            state.degraded[self.name] = BUDGET_TOO_SHORT
            return
        state.feature_names, state.features = self._read(query, state)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.features = None


class FeastFeatureHydrator(PackedFeatureHydrator):
    """Feast's own `get_online_features` for the same service and candidates (slow; for comparison)."""

    def __init__(self, store, service: str, names: tuple[str, ...], min_ms: float):
        self.store, self.min_ms = store, min_ms
        self.service = store.get_feature_service(service)
        self.names = tuple(names)

    def _read(self, query: FeedQuery, state: FeedState) -> tuple[tuple[str, ...], np.ndarray]:
        ts = int(query.now_ms // 1000)
        cands = state.candidates
        rows = [{"viewer_id": query.viewer_id, "author_id": a, "post_id": p, REQUEST_TS: ts}
                for a, p in zip(cands.author.tolist(), cands.post.tolist(), strict=True)]
        found = self.store.get_online_features(features=self.service, entity_rows=rows,
                                               full_feature_names=True).to_dict()
        values = np.array([[np.nan if v is None else v for v in found[n]] for n in self.names],
                          dtype=np.float32).T
        return self.names, values
