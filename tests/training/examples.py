"""Hand-made training sets for the training tests: a day of one surface's examples whose clicks rise
with one signal feature, labelled under the shipped vocabulary's heads (or any heads given)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from data import columns as c
from data.vocabulary import load_vocabulary
from training.config import TrainingConfig
from training.heads import ValueHeads, value_heads
from training.labels import graded_relevance, realised_value

SIGNAL = "signal__x"
FEATURES = ["post__likes", "post__comments", "post__shares", "post__saves",
            "viewer_author__engagement_score_decayed", SIGNAL]
CFG = TrainingConfig.load().model_copy(update={
    "train_days": 1, "min_positive_requests": 5,
    "feature_service": "feed_ranker_v1",  # hand-made sets: no real-time view's column
    "lambdarank": {**TrainingConfig.load().lambdarank, "num_boost_round": 20, "min_data_in_leaf": 20},
    "heads": {**TrainingConfig.load().heads, "num_boost_round": 20, "min_data_in_leaf": 20},
})
SHIPPED = value_heads(load_vocabulary(), CFG)


def examples(day: str, surface: str, heads: ValueHeads, n_requests: int = 200, per: int = 10, seed: int = 0,
             positives: dict[str, float] | None = None) -> pd.DataFrame:
    """A day's training set of one surface: the heads in `positives` clicked with probability
    rising in the signal feature (scaled by the given rate), every other head without positives."""
    rng = np.random.default_rng([seed, sum(map(ord, day + surface))])
    n = n_requests * per
    x = rng.normal(size=n)
    ts = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
    frame = pd.DataFrame({
        c.REQUEST_ID: np.repeat([f"{day}-{surface}-{i:04d}" for i in range(n_requests)], per),
        c.POSITION: np.tile(np.arange(per), n_requests),
        c.SURFACE: surface,
        c.VIEWER_ID: np.repeat(np.arange(n_requests), per),
        c.POST_ID: np.arange(n),
        c.TS: pd.Timestamp(ts),
        c.CREATED_AT: pd.Timestamp(ts) - pd.to_timedelta(rng.random(n) * 48, unit="h"),
        "day": day,
    })
    for name in FEATURES[:-1]:
        frame[name] = rng.integers(0, 50, n).astype(np.float32)
    frame[SIGNAL] = x.astype(np.float32)
    p = 1 / (1 + np.exp(-(3 * x - 2.5)))
    for head in heads.names:
        rate = (positives or {}).get(head, 0.0)
        frame[f"y_{head}"] = (rng.random(n) < rate * p).astype(np.int8)
    frame["value"] = realised_value(frame, heads)
    frame["grade"] = graded_relevance(frame, heads, CFG)
    return frame
