"""Simulated online A/B: replay a day's sessions in the simulator, each viewer randomly assigned
to the treatment (the champion) or the control (chronological) policy, and measure what the
hidden truth expects them to do.

Every session keeps its logged candidates (the request's impressions), so the arms differ only in
ordering. Each arm shows the top `slots` of its ranking; a post at 0-based position k is examined
with the simulator's position bias, so

    expected engagements of a session = sum over shown posts of examine(k) * sum_a P(a)

over the positive actions (like, comment, share, save, profile visit, long dwell). The unit of
randomisation is the viewer, so the confidence interval comes from a Poisson bootstrap over
viewers of the ratio (engagements per session, treatment / control).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data import columns as c
from data.world import POSITIVE_ACTIONS, TRUE_VALUE_WEIGHTS, TruthModel, examine_probability
from training.metrics import group_codes, rank_within_groups

BOOTSTRAP_REPLICATES = 400


def served_positions(groups: np.ndarray, scores: np.ndarray, slots: int) -> np.ndarray:
    """0-based position of every row under `scores` within its request (>= slots: not shown)."""
    order, rank = rank_within_groups(group_codes(groups), scores)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = rank
    return position


def session_outcomes(frame: pd.DataFrame, scores: np.ndarray, probabilities: dict[str, np.ndarray],
                     slots: int) -> pd.DataFrame:
    """Per request: viewer, expected engagements and expected value of the shown slate."""
    position = served_positions(frame[c.REQUEST_ID].to_numpy(), scores, slots)
    shown = position < slots
    examine = np.where(shown, examine_probability(np.minimum(position, slots)), 0.0)
    engagements = examine * sum(probabilities[a] for a in POSITIVE_ACTIONS)
    value = examine * sum(TRUE_VALUE_WEIGHTS[a] * p for a, p in probabilities.items())
    rows = pd.DataFrame({c.REQUEST_ID: frame[c.REQUEST_ID].to_numpy(), c.VIEWER_ID: frame[c.VIEWER_ID].to_numpy(),
                         "engagements": engagements, "value": value})
    return rows.groupby(c.REQUEST_ID, sort=False).agg(
        viewer_id=(c.VIEWER_ID, "first"), engagements=("engagements", "sum"), value=("value", "sum"))


def _bootstrap_ratio(t: pd.DataFrame, k: pd.DataFrame, column: str, seed: int) -> np.ndarray:
    """Replicates of (per-session mean in treatment) / (per-session mean in control) - 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(BOOTSTRAP_REPLICATES // 100):
        wt = rng.poisson(1.0, (100, len(t)))
        wk = rng.poisson(1.0, (100, len(k)))
        mt = (wt @ t[column].to_numpy()) / np.maximum(wt @ t["sessions"].to_numpy(), 1)
        mk = (wk @ k[column].to_numpy()) / np.maximum(wk @ k["sessions"].to_numpy(), 1)
        out.append(mt / mk - 1.0)
    return np.concatenate(out)


def simulate(frame: pd.DataFrame, champion_scores: np.ndarray, truth: TruthModel, *,
             slots: int, treatment_share: float, seed: int) -> dict:
    """Engagement lift of the champion over chronological, with a 95 % CI (percent)."""
    viewers = np.sort(frame[c.VIEWER_ID].unique())
    in_treatment = np.random.default_rng(seed).random(len(viewers)) < treatment_share
    treated = set(viewers[in_treatment].tolist())
    arm = frame[c.VIEWER_ID].isin(treated).to_numpy()
    chrono = frame[c.CREATED_AT].astype("int64").to_numpy() / 1e9
    scores = np.where(arm, champion_scores, chrono)
    probabilities = truth.probabilities(frame[c.VIEWER_ID].to_numpy(), frame[c.POST_ID].to_numpy(), frame[c.TS])
    sessions = session_outcomes(frame, scores, probabilities, slots)
    sessions["treatment"] = sessions[c.VIEWER_ID].isin(treated)
    per_viewer = sessions.groupby([c.VIEWER_ID, "treatment"]).agg(
        sessions=("engagements", "size"), engagements=("engagements", "sum"), value=("value", "sum")
    ).reset_index()
    t, k = per_viewer[per_viewer["treatment"]], per_viewer[~per_viewer["treatment"]]
    result: dict = {"viewers": {"treatment": len(t), "control": len(k)},
                    "sessions": {"treatment": int(t["sessions"].sum()), "control": int(k["sessions"].sum())},
                    "slots": slots}
    if len(t) == 0 or len(k) == 0:
        raise ValueError("the A/B needs viewers in both arms")
    for column in ("engagements", "value"):
        mean_t = t[column].sum() / t["sessions"].sum()
        mean_k = k[column].sum() / k["sessions"].sum()
        reps = _bootstrap_ratio(t, k, column, seed)
        result[column] = {
            "per_session_treatment": float(mean_t),
            "per_session_control": float(mean_k),
            "lift_pct": float(100 * (mean_t / mean_k - 1.0)),
            "ci95_pct": [float(100 * np.quantile(reps, 0.025)), float(100 * np.quantile(reps, 0.975))],
        }
    return result
