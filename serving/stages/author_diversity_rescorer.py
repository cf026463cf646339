"""AuthorDiversityRescorer: in score order, an author's k-th post keeps (1 - floor) * decay^k + floor
of its score (home-mixer's AuthorBasedListwiseRescoringProvider), so one prolific author cannot fill
the page while a strong enough post of theirs still can come second."""

from __future__ import annotations

import numpy as np

from serving.pipeline import FeedQuery, FeedState
from serving.stages.out_of_network_rescorer import scaled


class AuthorDiversityRescorer:
    name = "author_diversity"

    def __init__(self, decay: float, floor: float):
        self.decay, self.floor = decay, floor

    def run(self, query: FeedQuery, state: FeedState) -> None:
        if state.scores is None or not len(state.scores):
            return
        order = np.argsort(-state.scores, kind="stable")
        seen: dict[int, int] = {}
        k = np.empty(len(order), dtype=np.int64)
        for i in order.tolist():
            author = state.candidates[i].author_id
            k[i] = seen.get(author, 0)
            seen[author] = k[i] + 1
        factor = (1.0 - self.floor) * np.power(self.decay, k) + self.floor
        state.scores = scaled(state.scores, factor)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass
