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
        k = rank_within_author(state.candidates.author, state.scores)
        factor = (1.0 - self.floor) * np.power(self.decay, k) + self.floor
        state.scores = scaled(state.scores, factor)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass


def rank_within_author(author: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per candidate: how many posts of its author score above it (ties: the earlier one first)."""
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    _, group = np.unique(author[order], return_inverse=True)
    by_group = np.argsort(group, kind="stable")  # score order within each author
    starts = np.flatnonzero(np.r_[True, np.diff(group[by_group]) != 0])
    k_sorted = np.empty(n, dtype=np.int64)
    k_sorted[by_group] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    k = np.empty(n, dtype=np.int64)
    k[order] = k_sorted
    return k
