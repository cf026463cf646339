"""ExplorationShuffleSelector: the surface's selector, plus an exploration share that makes the
served order random on a known share of requests, so any future ranker can be judged off-policy.

The wrapped selector chooses the page (which posts, in its order: the base ranking). Then, with
probability `share` per request, the page is served in a uniformly random permutation of itself
(privacy and every other filter already ran: only kept, selected posts are reordered). The
logging policy is the mixture, so the propensity of a served (post, position) is its marginal
probability under it, whichever way this request's coin fell:

    P(post at k | page) = (1 - share) * [the base order puts it at k] + share / K      (K = page size)

A non-exploring request logs (1 - share) + share / K for every slot, not 1.0: 1.0 would be the
propensity of the deterministic policy alone, and weighting by it makes IPS ignore the coin and
overcount every target that agrees with the base order. What this supports (training/ope.py):
item-position IPS, SNIPS and DR for any target that reorders the posts of the served pages; a
target that would show a post the page did not hold has no support here (p = 0).
With share = 0 nothing is explored and no propensity is logged (null): a deterministic log supports
no other policy.
"""

from __future__ import annotations

import threading

import numpy as np

from serving.pipeline import FeedQuery, FeedState, Stage


def page_propensities(share: float, page_size: int, permutation: np.ndarray) -> np.ndarray:
    """Marginal P(served post at served position) for a page served as base[permutation]."""
    stays = permutation == np.arange(page_size)
    return (1.0 - share) * stays + share / page_size


class ExplorationShuffleSelector:
    def __init__(self, inner: Stage, share: float, rng: np.random.Generator | None = None):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"exploration share must be in [0, 1], got {share}")
        self.inner, self.share = inner, share
        self.name = inner.name  # one step: "select" (choose the page, then maybe shuffle it)
        self._rng = rng if rng is not None else np.random.default_rng()
        self._lock = threading.Lock()  # a Generator is not thread safe; requests share this stage

    def run(self, query: FeedQuery, state: FeedState) -> None:
        self.inner.run(query, state)
        state.propensities = None
        k = len(state.selected)
        if self.share == 0.0 or k == 0:
            return
        with self._lock:
            explore = self._rng.random() < self.share
            permutation = self._rng.permutation(k) if explore else np.arange(k)
        state.selected = state.selected[permutation]
        state.propensities = page_propensities(self.share, k, permutation)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        # The page came from the wrapped selector's fallback, not from the declared policy: no
        # propensity (OPE leaves such requests out).
        self.inner.fallback(query, state)
        state.propensities = None
