"""The affinity/recency heuristic: what the service ranks with when no champion is registered, and
the fallback when features or the model fail or run out of time.

    score = (1 + affinity_weight * log1p(affinity) + in_network_bonus * in_network) * 0.5^(age_h / half_life)

affinity is the viewer → author relationship strength (decayed engagement score), in_network whether
the viewer follows the author; both come from the hydrated features when there are any, else from
what the candidate record says (its source; its creation time, when the source knew it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from candidate_gen.block import CandidateBlock
from serving.config import HeuristicConfig

# feature columns (features/online/ranking.py), by name: the heuristic runs without the feature reader
AFFINITY = "viewer_author__engagement_score_decayed"
IN_NETWORK_FEATURE = "request_features__in_network"
AGE_HOURS = "request_features__post_age_hours_at_request"
UNKNOWN_AGE_H = 24.0  # a candidate whose age nobody knows counts as a day old


class HeuristicScorer:
    def __init__(self, cfg: HeuristicConfig):
        self.cfg = cfg

    def score(self, candidates: CandidateBlock, now_ms: int, values: np.ndarray | None = None,
              names: Sequence[str] | None = None) -> np.ndarray:
        n = len(candidates)
        in_net = candidates.in_network.astype(np.float64)
        created = candidates.created_ms.astype(np.float64)
        age_h = np.where(created > 0, (now_ms - created) / 3_600_000.0, UNKNOWN_AGE_H)
        affinity = np.zeros(n)
        if values is not None and names is not None:
            col = {name: i for i, name in enumerate(names)}
            if AFFINITY in col:
                affinity = np.nan_to_num(values[:, col[AFFINITY]].astype(np.float64), nan=0.0)
            if IN_NETWORK_FEATURE in col:
                in_net = np.nan_to_num(values[:, col[IN_NETWORK_FEATURE]].astype(np.float64), nan=0.0)
            if AGE_HOURS in col:
                known = values[:, col[AGE_HOURS]].astype(np.float64)
                age_h = np.where(np.isnan(known), age_h, known)
        base = 1.0 + self.cfg.affinity_weight * np.log1p(np.maximum(affinity, 0.0)) + self.cfg.in_network_bonus * in_net
        return base * np.power(0.5, np.maximum(age_h, 0.0) / self.cfg.recency_half_life_h)
