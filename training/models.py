"""LightGBM rankers: a LambdaRank model on the graded label, and a value model of per-action
binary heads combined as score = sum_a w_a * P(a) (negative weight for hide/report). The value
model holds whichever heads its run could train (training/heads.py); the saved weights name them,
so scoring (here, serving/scoring_model.py, serving/compiled_ranker.py) sums over what was saved.

Both are a `Ranker`: feature names + boosters + how to combine them, saved as LightGBM text
models plus a small JSON, so serving can load (and compile) them without this package's
training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from data import columns as c
from training.config import TrainingConfig
from training.errors import NotEnoughData, TrainingDataError
from training.heads import label_column, value

LAMBDARANK, VALUE_MODEL = "lambdarank", "value_model"
META_FILE = "ranker.json"


@dataclass
class Ranker:
    kind: str
    feature_names: list[str]
    boosters: dict[str, lgb.Booster]  # "lambdarank", or one per head
    weights: dict[str, float] = field(default_factory=dict)  # value model: w_a per head
    best_iterations: dict[str, int] = field(default_factory=dict)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.feature_names if f not in frame.columns]
        if missing:
            raise TrainingDataError(f"feature columns missing from the frame: {missing}")
        return frame[self.feature_names].to_numpy(np.float32)

    def predict_heads(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """P(action) per head (value model only)."""
        return {h: b.predict(x) for h, b in self.boosters.items() if h != LAMBDARANK}

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.kind == LAMBDARANK:
            return self.boosters[LAMBDARANK].predict(x)
        return value(self.weights, self.predict_heads(x))

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(path / f"{name}.txt"))
        meta = {"kind": self.kind, "feature_names": self.feature_names, "boosters": list(self.boosters),
                "weights": self.weights, "best_iterations": self.best_iterations}
        (path / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Ranker:
        path = Path(path)
        meta = json.loads((path / META_FILE).read_text())
        boosters = {n: lgb.Booster(model_file=str(path / f"{n}.txt")) for n in meta["boosters"]}
        return cls(meta["kind"], meta["feature_names"], boosters, meta["weights"], meta["best_iterations"])


def group_sizes(frame: pd.DataFrame) -> np.ndarray:
    """Sizes of consecutive request groups (the frame must be sorted by request)."""
    ids = frame[c.REQUEST_ID].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    if len(np.unique(ids)) != len(starts):
        raise TrainingDataError("rows of a request are not contiguous: sort by request_id first")
    return np.diff(np.r_[starts, len(ids)])


def validate(frame: pd.DataFrame, feature_names: list[str], name: str, cfg: TrainingConfig) -> None:
    """Refuse a split that cannot train or judge a ranker, with what was found and what is needed:
    `NotEnoughData` when the data is too small, `TrainingDataError` when the set is malformed."""
    need = f"needs at least 2 requests and {cfg.min_positive_requests} with a positive ([data] min_positive_requests)"
    if frame.empty:
        raise NotEnoughData(f"{name}: the training set is empty (0 requests; {need})")
    missing = [f for f in feature_names if f not in frame.columns]
    if missing:
        raise TrainingDataError(f"{name}: feature columns missing: {missing}")
    n_groups = frame[c.REQUEST_ID].nunique()
    positive_groups = frame.loc[frame["grade"] > 0, c.REQUEST_ID].nunique()
    found = f"{n_groups} requests, {positive_groups} with a positive; {need}"
    if n_groups < 2:
        raise NotEnoughData(f"{name}: a single request group ({found}); ranking needs several")
    if positive_groups == 0:
        raise NotEnoughData(f"{name}: no positives, no impression has a positive label ({found})")
    if positive_groups < cfg.min_positive_requests:
        raise NotEnoughData(f"{name}: too few requests with a positive ({found})")


def lgb_params(section: dict, seed: int) -> tuple[dict, int, int]:
    """LightGBM parameters, rounds and early-stopping patience from a config section."""
    params = {k: v for k, v in section.items() if k not in ("num_boost_round", "early_stopping_rounds")}
    # OpenMP threads spin while waiting: on a busy 2-core box more threads than free cores run
    # ~10x slower, so the thread count is config (num_threads), 1 unless set.
    params = {"num_threads": 1, **params}
    params.update(verbosity=-1, seed=seed, deterministic=True, force_row_wise=True)
    return params, int(section["num_boost_round"]), int(section["early_stopping_rounds"])


def train_lambdarank(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], cfg: TrainingConfig) -> Ranker:
    params, rounds, patience = lgb_params(cfg.lambdarank, cfg.seed)
    params["label_gain"] = [float(2**g - 1) for g in range(len(cfg.grade_thresholds) + 1)]
    # the served position of each impression: LightGBM learns its examination bias while training
    # (the validation NDCG, and the model's scores, do not use it)
    position = train[c.POSITION].to_numpy(np.int32) if cfg.position_debiased else None
    dtrain = lgb.Dataset(train[features].to_numpy(np.float32), train["grade"], group=group_sizes(train),
                         feature_name=features, free_raw_data=True, position=position)
    dvalid = lgb.Dataset(valid[features].to_numpy(np.float32), valid["grade"], group=group_sizes(valid),
                         reference=dtrain)
    booster = lgb.train(params, dtrain, rounds, valid_sets=[dvalid], valid_names=["valid"],
                        callbacks=[lgb.early_stopping(patience, verbose=False)])
    return Ranker(LAMBDARANK, features, {LAMBDARANK: booster}, best_iterations={LAMBDARANK: booster.best_iteration})


def train_heads(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], cfg: TrainingConfig,
                weights: dict[str, float]) -> Ranker:
    """One binary head per entry of `weights` (head -> business weight), combined by those weights."""
    if not any(w > 0 for w in weights.values()):
        raise NotEnoughData("value model: no head with a positive weight has positives in both splits "
                            f"(trainable heads: {sorted(weights) or 'none'})")
    params, rounds, patience = lgb_params(cfg.heads, cfg.seed)
    # One binned Dataset per split for every head: the bins depend on the features only, so a head
    # swaps in its labels (set_label) instead of binning the same matrix again; same models.
    dtrain = lgb.Dataset(train[features].to_numpy(np.float32), feature_name=features)
    dvalid = lgb.Dataset(valid[features].to_numpy(np.float32), reference=dtrain)
    boosters, best = {}, {}
    for head in weights:
        y_train, y_valid = train[label_column(head)].to_numpy(), valid[label_column(head)].to_numpy()
        if y_train.sum() == 0 or y_valid.sum() == 0:
            split = "training" if y_train.sum() == 0 else "validation"
            raise NotEnoughData(f"head {head!r}: no positives in the {split} split")
        dtrain.set_label(y_train)
        dvalid.set_label(y_valid)
        booster = lgb.train(params, dtrain, rounds, valid_sets=[dvalid], valid_names=["valid"],
                            callbacks=[lgb.early_stopping(patience, verbose=False)])
        boosters[head], best[head] = booster, booster.best_iteration
    return Ranker(VALUE_MODEL, features, boosters, dict(weights), best)
