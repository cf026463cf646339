"""The non-learned orderings every ranker is judged against, on the same candidates:
chronological (newest first), popularity (the post's engagements so far), affinity (relationship
strength alone), random, and the oracle (the simulator's true expected value; evaluation only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data import columns as c

POPULARITY_FEATURES = ("post__likes", "post__comments", "post__shares", "post__saves")
AFFINITY_FEATURE = "viewer_author__engagement_score_decayed"
TRUE_VALUE = "true_value"  # column the evaluation adds when the simulator's truth is at hand


def chronological(frame: pd.DataFrame) -> np.ndarray:
    return frame[c.CREATED_AT].astype("int64").to_numpy() / 1e9


def popularity(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(POPULARITY_FEATURES)].fillna(0).sum(axis=1).to_numpy(np.float64)


def affinity(frame: pd.DataFrame) -> np.ndarray:
    return frame[AFFINITY_FEATURE].fillna(0).to_numpy(np.float64)


def random(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(len(frame))


def oracle(frame: pd.DataFrame) -> np.ndarray:
    return frame[TRUE_VALUE].to_numpy(np.float64)


BASELINES = {"chronological": chronological, "popularity": popularity, "affinity": affinity, "random": random}
