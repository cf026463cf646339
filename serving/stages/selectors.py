"""Selectors: which scored candidates fill the page, in which order.

`TopKSelector`: the `limit` best. `HomeMixSelector`: the best first, suggested (Explore) posts up
to `explore_share` of the page; when the viewer's network has nothing more, the page is filled with
suggestions (if `fill`). `RankAllSelector` (/v1/rank): every candidate, best first. With no scores
at all (scoring failed beyond its fallback) every selector serves newest first.
"""

from __future__ import annotations

import math

import numpy as np

from serving.heuristic import IN_NETWORK_SOURCES
from serving.pipeline import FeedQuery, FeedState


def _order(state: FeedState) -> np.ndarray:
    if state.scores is None or len(state.scores) != len(state.candidates):
        state.scores = np.array([float(c.created_ms) for c in state.candidates])
        state.model_scores = state.model_features = None
        state.model_version, state.scorer = "chronological", "chronological"
    return np.argsort(-state.scores, kind="stable")


class TopKSelector:
    name = "select"

    def run(self, query: FeedQuery, state: FeedState) -> None:
        state.selected = _order(state)[: query.limit].tolist()

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.scores = None
        state.selected = _order(state)[: query.limit].tolist()


class RankAllSelector(TopKSelector):
    def run(self, query: FeedQuery, state: FeedState) -> None:
        state.selected = _order(state).tolist()


class HomeMixSelector(TopKSelector):
    def __init__(self, explore_share: float, fill: bool):
        self.explore_share, self.fill = explore_share, fill

    def run(self, query: FeedQuery, state: FeedState) -> None:
        order = _order(state)
        max_explore = math.floor(self.explore_share * query.limit)
        picked, explore, overflow = [], 0, []
        for i in order.tolist():
            if len(picked) == query.limit:
                break
            if state.candidates[i].source in IN_NETWORK_SOURCES:
                picked.append(i)
            elif explore < max_explore:
                picked.append(i)
                explore += 1
            else:
                overflow.append(i)
        if self.fill and len(picked) < query.limit:  # the network ran dry: suggestions fill the page
            picked += overflow[: query.limit - len(picked)]
            picked.sort(key=lambda i: -state.scores[i])
        state.selected = picked
