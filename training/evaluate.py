"""Every ranker and baseline on the same candidates of the same test day.

Two kinds of gain:
- realised: the graded label from what viewers did (what a production platform can measure;
  noisy, and biased by the positions the logging policy chose);
- true (simulator only): max(expected value, 0) from the hidden truth, position-free, the same
  quantity the oracle orders by. `ndcg10` / `ndcg50` use it when the truth is available; the
  oracle then scores 1.0 and "% of oracle" is the model's NDCG over the oracle's. A team's data
  has no truth: no oracle, no "% of oracle", and `ndcg10` / `ndcg50` are the realised ones.
MAP uses "any positive action" as relevance. Segments re-rank each request's rows inside the
segment (viewer segments keep whole requests; author / network segments keep some of its rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data import columns as c
from data.world import TruthModel
from training import metrics
from training.baselines import BASELINES, TRUE_VALUE, oracle
from training.heads import label_column
from training.models import VALUE_MODEL, Ranker

NEW_VIEWER_DAYS = 14  # an account younger than this (or without history) is a "new" viewer
HEAVY_QUANTILE = 0.75  # viewers at or above this quantile of requests_7d are "heavy"
FRESH_POST_HOURS = 24.0  # a post younger than this at the request is "fresh"


def attach_truth(frame: pd.DataFrame, truth: TruthModel | None) -> pd.DataFrame:
    """Add the simulator's position-free expected value of every row (when there is a truth: with
    the posts live mode published when the days hold some, WorkspaceResource.truth_model)."""
    if truth is None:
        return frame
    posts = frame[c.POST_ID].to_numpy()
    unknown = posts >= len(truth.posts.author)
    unknown[~unknown] = truth.posts.author[posts[~unknown]] == 0  # a hole in the ids is no post
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} rows hold posts the simulated truth does not know (e.g. "
                         f"{int(posts[unknown][0])}): posts published in live mode are judged from its "
                         "file of them (Settings.live_posts_file)")
    out = frame.copy()
    out[TRUE_VALUE] = truth.expected_value(
        out[c.VIEWER_ID].to_numpy(), out[c.POST_ID].to_numpy(), out[c.TS]
    )
    return out


def segments(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    age = frame.get("viewer__account_age_days", pd.Series(np.nan, index=frame.index))
    requests = frame.get("viewer__requests_7d", pd.Series(np.nan, index=frame.index))
    new = (age < NEW_VIEWER_DAYS) | requests.isna()
    heavy_cut = requests[~new].quantile(HEAVY_QUANTILE) if (~new).any() else np.inf
    celebrity = frame.get("author__is_celebrity", pd.Series(0.0, index=frame.index)).fillna(0) > 0
    in_network = frame.get("request_features__in_network", pd.Series(0.0, index=frame.index)).fillna(0) > 0
    # a post published within the day before the request: how it is doing so far is all there is to know
    post_age_h = frame.get("request_features__post_age_hours_at_request", pd.Series(np.nan, index=frame.index))
    return {
        "new_viewers": new.to_numpy(),
        "heavy_viewers": (~new & (requests >= heavy_cut)).to_numpy(),
        "celebrity_authors": celebrity.to_numpy(),
        "ordinary_authors": (~celebrity).to_numpy(),
        "in_network": in_network.to_numpy(),
        "out_of_network": (~in_network).to_numpy(),
        "posts_under_24h": (post_age_h < FRESH_POST_HOURS).to_numpy(),
        "posts_24h_and_older": (post_age_h >= FRESH_POST_HOURS).to_numpy(),
    }


def headline_gains(frame: pd.DataFrame) -> np.ndarray:
    """The gains of the headline NDCG: the simulator's true value (clipped at 0) where the frame
    has it, the realised grade otherwise."""
    if TRUE_VALUE in frame:
        return np.maximum(frame[TRUE_VALUE].to_numpy(np.float64), 0.0)
    return frame["grade"].to_numpy(np.float64)


def ndcg10(frame: pd.DataFrame, scores: np.ndarray) -> float:
    """`ranking_metrics(...)["ndcg10"]` alone: all a segment reports."""
    return metrics.ndcg(frame[c.REQUEST_ID].to_numpy(), headline_gains(frame), scores, 10)


def ranking_metrics(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    groups = frame[c.REQUEST_ID].to_numpy()
    realised = frame["grade"].to_numpy(np.float64)
    out = {
        "ndcg10_realised": metrics.ndcg(groups, realised, scores, 10),
        "ndcg50_realised": metrics.ndcg(groups, realised, scores, 50),
        "map": metrics.mean_average_precision(groups, frame["value"].to_numpy() > 0, scores),
    }
    if TRUE_VALUE in frame:
        gains = headline_gains(frame)
        out["ndcg10"] = metrics.ndcg(groups, gains, scores, 10)
        out["ndcg50"] = metrics.ndcg(groups, gains, scores, 50)
    else:  # the headline is the realised NDCG: already computed
        out["ndcg10"], out["ndcg50"] = out["ndcg10_realised"], out["ndcg50_realised"]
    return out


def score_all(frame: pd.DataFrame, models: dict[str, Ranker], seed: int = 0) -> dict[str, np.ndarray]:
    scores = {name: model.predict(model.matrix(frame)) for name, model in models.items()}
    for name, baseline in BASELINES.items():
        scores[name] = baseline(frame, seed) if name == "random" else baseline(frame)
    if TRUE_VALUE in frame:
        scores["oracle"] = oracle(frame)
    return scores


def evaluate(frame: pd.DataFrame, models: dict[str, Ranker], primary: str, seed: int = 0) -> dict:
    """Metrics of every model and baseline on `frame` (one surface's test day), the primary
    model's NDCG as a share of the oracle and its lift over chronological, segments, and the
    per-head AUC / log loss / calibration of every value model."""
    scores = score_all(frame, models, seed)
    report: dict = {"rows": len(frame), "requests": int(frame[c.REQUEST_ID].nunique()),
                    "rankers": {name: ranking_metrics(frame, s) for name, s in scores.items()}}
    best = report["rankers"][primary]["ndcg10"]
    if "oracle" in report["rankers"]:
        report["pct_of_oracle"] = 100.0 * best / report["rankers"]["oracle"]["ndcg10"]
    report["lift_vs_chronological_pct"] = 100.0 * (best / report["rankers"]["chronological"]["ndcg10"] - 1.0)
    report["segments"] = {}
    for seg, mask in segments(frame).items():
        if mask.sum() == 0:
            continue
        sub = frame[mask]
        report["segments"][seg] = {
            "rows": int(mask.sum()),
            **{name: ndcg10(sub, s[mask]) for name, s in scores.items()},
        }
    report["heads"] = {}
    for name, model in models.items():
        if model.kind != VALUE_MODEL:
            continue
        heads = model.predict_heads(model.matrix(frame))
        report["heads"][name] = {  # the heads this model was trained with
            h: {**metrics.classification(frame[label_column(h)], p),
                "calibration": metrics.calibration(frame[label_column(h)], p)}
            for h, p in heads.items() if label_column(h) in frame
        }
    return report
