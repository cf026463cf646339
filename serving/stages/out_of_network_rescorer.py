"""OutOfNetworkRescorer: suggested (Explore) posts on Home are scaled by `scale` (< 1), so a post
from an account the viewer follows wins a near tie (home-mixer's OutOfNetworkScaleFactor)."""

from __future__ import annotations

import numpy as np

from serving.pipeline import FeedQuery, FeedState


def scaled(scores: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Multiply by factor <= 1 so that it always lowers (by factor >= 1: always raises): negative
    scores are divided instead."""
    return np.where(scores >= 0, scores * factor, scores / factor)


class OutOfNetworkRescorer:
    name = "out_of_network"

    def __init__(self, scale: float):
        self.scale = scale

    def run(self, query: FeedQuery, state: FeedState) -> None:
        if state.scores is None or self.scale == 1.0:
            return
        state.scores = scaled(state.scores, np.where(state.candidates.in_network, 1.0, self.scale))

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass  # scores stay unscaled
