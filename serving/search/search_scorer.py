"""SearchScorer: one score per matched post, in input order, from how well its text matches and what
the viewer has with its author.

    score = text_weight · text + relationship_weight · relationship + recency_weight · recency
    text         = relevance / max(relevance) over the matches fetched  (BM25, 1 for the best match)
    relationship = 1 if the viewer follows the author, else affinity / (1 + affinity)
                   (affinity: the viewer → author score of `{u:<viewer>}:affinity`, candidates/social)
    recency      = 0.5 ^ (age_h / recency_half_life_h)

Every term is in [0, 1]; with the shipped weights (0.6, 0.25, 0.15) a better text match leads, and a
followed author or a fresh post decides between matches about as good.
"""

from __future__ import annotations

import numpy as np

from candidate_gen.block import CandidateBlock


class SearchScorer:
    def __init__(self, text_weight: float, relationship_weight: float, recency_weight: float,
                 recency_half_life_h: float):
        self.weights = (text_weight, relationship_weight, recency_weight)
        self.half_life_h = recency_half_life_h

    def score(self, matches: CandidateBlock, now_ms: int, follows: np.ndarray, affinity: np.ndarray) -> np.ndarray:
        """`matches.score`: each post's text relevance (> 0); `follows` (bool) and `affinity` (>= 0)
        per post's author, aligned with `matches`."""
        if not len(matches):
            return np.zeros(0)
        relevance = np.maximum(matches.score, 0.0)
        text = relevance / max(float(relevance.max()), 1e-12)
        a = np.maximum(np.nan_to_num(affinity, nan=0.0), 0.0)
        relationship = np.where(follows, 1.0, a / (1.0 + a))
        age_h = np.maximum(now_ms - matches.created_ms, 0) / 3_600_000.0
        recency = np.power(0.5, age_h / self.half_life_h)
        w_text, w_rel, w_rec = self.weights
        return w_text * text + w_rel * relationship + w_rec * recency
