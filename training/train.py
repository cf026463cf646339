"""One surface's rankers for a test day T: train on the `train_days` days before T-1, early-stop on
T-1, judge on T (time-based split, never random), and pick the challenger on the validation day.

Too little data is said before any training, for all three splits at once (`NotEnoughData`: the
surface is skipped). LambdaRank and the value model train independently: one that cannot be
trained is reported and the other can still be the challenger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from data import columns as c
from data.days import days_before
from features.services import SERVICE_V1, is_realtime, service_columns
from training import metrics
from training.config import TrainingConfig
from training.dataset import example_days, feature_columns, read_examples
from training.errors import NotEnoughData, TrainingDataError
from training.heads import ValueHeads, usable_heads
from training.models import LAMBDARANK, VALUE_MODEL, Ranker, train_heads, train_lambdarank, validate


def split_days(test_day: str, train_days: int) -> dict[str, list[str]]:
    return {
        "train": [days_before(test_day, k) for k in range(train_days + 1, 1, -1)],
        "valid": [days_before(test_day, 1)],
        "test": [test_day],
    }


@dataclass
class SurfaceSplit:
    surface: str
    days: dict[str, list[str]]
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    features: list[str]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values([c.REQUEST_ID, c.POSITION], kind="stable").reset_index(drop=True)


def load_split(lake_dir: Path, surface: str, test_day: str, cfg: TrainingConfig) -> SurfaceSplit:
    """The three splits of one surface, validated before any training: every split's shortfall
    in one `NotEnoughData` (requests and positives found vs needed)."""
    days = split_days(test_day, cfg.train_days)
    # Up to train_days: a young world (or lake) trains on the days it has.
    available = set(example_days(lake_dir))
    days["train"] = [d for d in days["train"] if d in available] or days["train"][-1:]
    frames = {name: _sorted(read_examples(lake_dir, d, surface)) for name, d in days.items()}
    features = service_columns(feature_columns(frames["train"]), cfg.feature_service)
    if cfg.feature_service != SERVICE_V1 and not any(map(is_realtime, features)):
        raise TrainingDataError(f"{surface}: [features] service is {cfg.feature_service} but the training sets "
                                f"of {days['train']} hold no real-time feature: built with an older service? "
                                "Materialize features/realtime and training/examples for those days again")
    short = []
    for name, frame in frames.items():
        try:
            validate(frame, features, f"{name} ({', '.join(days[name])})", cfg)
        except NotEnoughData as exc:
            short.append(str(exc))
    if short:
        empty = all(f.empty for f in frames.values())
        why = f"no {surface} impressions on any of these days" if empty else "too little data"
        raise NotEnoughData(f"{surface}: {why}: " + "; ".join(short))
    return SurfaceSplit(surface, days, frames["train"], frames["valid"], frames["test"], features)


@dataclass
class TrainedRankers:
    rankers: dict[str, Ranker]  # kind -> trained ranker (LambdaRank, value model), those that trained
    failures: dict[str, str] = field(default_factory=dict)  # kind -> why it could not be trained
    dropped_heads: dict[str, str] = field(default_factory=dict)  # value-model head -> why it was left out


def train_rankers(split: SurfaceSplit, cfg: TrainingConfig, heads: ValueHeads) -> TrainedRankers:
    """Both kinds, independently; the value model from the heads that have positives."""
    weights, dropped = usable_heads(split.train, split.valid, heads)
    trainers = {
        LAMBDARANK: lambda: train_lambdarank(split.train, split.valid, split.features, cfg),
        VALUE_MODEL: lambda: train_heads(split.train, split.valid, split.features, cfg, weights),
    }
    out = TrainedRankers({}, dropped_heads=dropped)
    for kind, train in trainers.items():
        try:
            out.rankers[kind] = train()
        except (TrainingDataError, lgb.basic.LightGBMError) as exc:  # the other kind may still train
            out.failures[kind] = f"{type(exc).__name__}: {exc}"
    return out


def validation_ndcg(ranker: Ranker, valid: pd.DataFrame) -> float:
    """Realised-label NDCG@10 on the validation day: what picks the challenger (no truth needed)."""
    scores = ranker.predict(ranker.matrix(valid))
    return metrics.ndcg(valid[c.REQUEST_ID].to_numpy(), valid["grade"].to_numpy(np.float64), scores, 10)


def choose_challenger(rankers: dict[str, Ranker], valid: pd.DataFrame) -> tuple[str, dict[str, float]]:
    scores = {kind: validation_ndcg(r, valid) for kind, r in rankers.items()}
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if not finite:
        raise NotEnoughData("every ranker has a NaN validation NDCG@10 "
                            f"(no request with a positive and 2 rows?): {scores}")
    return max(finite, key=finite.get), scores
