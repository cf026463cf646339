"""Ranking and classification metrics over many request groups at once (vectorised NumPy;
`tests/training/test_training.py` checks NDCG against scikit-learn's per-list ndcg_score).

Ties in a score are broken by a fixed pseudo-random key, never by row order: rows arrive in the
logging policy's order, and a tie-break by position would hand a constant scorer that policy.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

TIE_SEED = 20261121


def group_codes(groups) -> np.ndarray:
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    return codes.astype(np.int64)


def rank_within_groups(codes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorted by (group, score desc, tie key) and each sorted row's 0-based rank."""
    tie = np.random.default_rng(TIE_SEED).random(len(codes))
    order = np.lexsort((tie, -np.asarray(scores, dtype=np.float64), codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    return order, rank


def ndcg_per_group(groups, gains, scores, k: int) -> np.ndarray:
    """NDCG@k of every group with at least two rows and a positive ideal DCG (NaN otherwise)."""
    codes = group_codes(groups)
    gains = np.asarray(gains, dtype=np.float64)
    if np.any(gains < 0):
        raise ValueError("NDCG gains must be non-negative")
    n_groups = codes.max() + 1 if len(codes) else 0
    order, rank = rank_within_groups(codes, scores)
    disc = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    dcg = np.bincount(codes[order], gains[order] * disc, minlength=n_groups)
    ideal_order, ideal_rank = rank_within_groups(codes, gains)
    ideal_disc = np.where(ideal_rank < k, 1.0 / np.log2(ideal_rank + 2.0), 0.0)
    idcg = np.bincount(codes[ideal_order], gains[ideal_order] * ideal_disc, minlength=n_groups)
    size = np.bincount(codes, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((idcg > 0) & (size >= 2), dcg / idcg, np.nan)


def ndcg(groups, gains, scores, k: int) -> float:
    per_group = ndcg_per_group(groups, gains, scores, k)
    return float(np.nanmean(per_group)) if np.any(~np.isnan(per_group)) else float("nan")


def mean_average_precision(groups, relevant, scores) -> float:
    """MAP over groups holding at least one relevant row."""
    codes = group_codes(groups)
    relevant = np.asarray(relevant, dtype=bool)
    order, rank = rank_within_groups(codes, scores)
    rel = relevant[order].astype(np.float64)
    sorted_codes = codes[order]
    cum = np.cumsum(rel)
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    before = np.repeat(np.r_[0.0, cum[starts[1:] - 1]], np.diff(np.r_[starts, len(rel)]))
    hits_so_far = cum - before
    precision_at_hit = np.where(rel > 0, hits_so_far / (rank + 1.0), 0.0)
    n_groups = codes.max() + 1 if len(codes) else 0
    ap_sum = np.bincount(sorted_codes, precision_at_hit, minlength=n_groups)
    n_rel = np.bincount(sorted_codes, rel, minlength=n_groups)
    return float(np.mean(ap_sum[n_rel > 0] / n_rel[n_rel > 0])) if np.any(n_rel > 0) else float("nan")


def classification(y, p) -> dict[str, float]:
    """AUC and log loss of one head (NaN when the labels hold one class only)."""
    y = np.asarray(y)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    if y.min() == y.max():
        return {"auc": float("nan"), "logloss": float("nan")}
    return {"auc": float(roc_auc_score(y, p)), "logloss": float(log_loss(y, p, labels=[0, 1]))}


def calibration(y, p, bins: int = 10) -> dict:
    """Reliability curve over quantile bins of p, and the expected calibration error
    (sum over bins of bin share * |observed rate - mean prediction|)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if len(p) == 0:
        return {"ece": float("nan"), "mean_predicted": [], "fraction_positive": []}
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.searchsorted(edges[1:-1], p, side="right")
    n = np.bincount(idx, minlength=len(edges))
    keep = n > 0
    mean_p = np.bincount(idx, p, minlength=len(edges))[keep] / n[keep]
    rate = np.bincount(idx, y, minlength=len(edges))[keep] / n[keep]
    ece = float(np.sum(n[keep] / len(p) * np.abs(rate - mean_p)))
    return {"ece": ece, "mean_predicted": mean_p.tolist(), "fraction_positive": rate.tolist()}
