"""Selectors: which scored candidates fill the page, in which order.

`TopKSelector`: the `limit` best. `HomeMixSelector`: the best first, out-of-network posts (the
Explore sources' suggestions) up to `out_of_network_share` of the page; when the viewer's network
has nothing more, the page is filled with them (if `fill`). `RankAllSelector` (/v1/rank): every
candidate, best first. With no scores at all (scoring failed beyond its fallback) every selector
serves newest first.
"""

from __future__ import annotations

import math

import numpy as np

from serving.pipeline import FeedQuery, FeedState


def _order(state: FeedState) -> np.ndarray:
    if state.scores is None or len(state.scores) != len(state.candidates):
        state.scores = state.candidates.created_ms.astype(np.float64)
        state.model_scores = state.model_features = None
        state.model_version, state.scorer = "chronological", "chronological"
    return np.argsort(-state.scores, kind="stable")


class TopKSelector:
    name = "select"

    def run(self, query: FeedQuery, state: FeedState) -> None:
        state.selected = _order(state)[: query.limit]

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.scores = None
        state.selected = _order(state)[: query.limit]


class RankAllSelector(TopKSelector):
    def run(self, query: FeedQuery, state: FeedState) -> None:
        state.selected = _order(state)


class HomeMixSelector(TopKSelector):
    def __init__(self, out_of_network_share: float, fill: bool):
        self.out_of_network_share, self.fill = out_of_network_share, fill

    def run(self, query: FeedQuery, state: FeedState) -> None:
        order = _order(state)
        max_oon = math.floor(self.out_of_network_share * query.limit)
        oon = ~state.candidates.in_network[order]
        allowed = ~oon | (np.cumsum(oon) <= max_oon)  # the best max_oon suggestions, every followed post
        picked = order[allowed][: query.limit]
        if self.fill and len(picked) < query.limit:  # the network ran dry: suggestions fill the page
            picked = np.concatenate([picked, order[~allowed][: query.limit - len(picked)]])
            picked = picked[np.argsort(-state.scores[picked], kind="stable")]
        state.selected = picked
