"""Off-policy evaluation where it can be checked: against the simulated A/B, and on real logs.

`simulated_lift` (needs the simulator's truth): the same sessions the A/B replays (each request's
logged candidates, the top `slots` shown) are served once more by an *exploring* policy — the base
ranking's page, except on a `share` of requests where the page is the top of a uniformly random
permutation of the request's candidates — and the viewers' engagements are drawn from the truth
model (examined with the position bias, then each positive action at its probability), so every
logged slot's propensity is exact:

    P(candidate at position k) = (1 - share) [base puts it at k] + share / n       (n candidates)

From that log alone, IPS / SNIPS / DR estimate the champion's and chronological order's
engagements per session and the lift between them, which is then compared with the A/B's
confidence interval and with the truth's own lift over all sessions.

`logged_lift` (any logs): the champion against chronological order over the pages a randomised
policy served (impressions with a propensity, e.g. the service's exploration share), each target
reordering the page's own posts (what those logs support).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data import columns as c
from data.world import POSITIVE_ACTIONS, TruthModel, examine_probability
from training.ab_test import served_positions
from training.ope import CrossFitTable, SlotLog, Target, folds, lift, unit_codes_like


def _deciles(values: np.ndarray) -> np.ndarray:
    edges = np.quantile(values, np.linspace(0.1, 0.9, 9))
    return np.searchsorted(edges, values, side="right").astype(np.int64)


def chronological_scores(frame: pd.DataFrame) -> np.ndarray:
    return frame[c.CREATED_AT].astype("int64").to_numpy() / 1e9


def exploring_log(frame: pd.DataFrame, base_scores: np.ndarray, truth: TruthModel, *, slots: int,
                  share: float, seed: int) -> pd.DataFrame:
    """One served page per request under the exploring policy: rows (frame index, position,
    propensity, reward) of the shown slots, rewards drawn from the truth."""
    rng = np.random.default_rng(seed)
    requests = frame[c.REQUEST_ID].to_numpy()
    codes, request_of = np.unique(requests, return_inverse=True)
    n = np.bincount(request_of)[request_of]  # candidates of each row's request
    base = served_positions(requests, base_scores, slots)
    explored = (rng.random(len(codes)) < share)[request_of]
    shuffled = served_positions(requests, rng.random(len(frame)), slots)
    position = np.where(explored, shuffled, base)
    shown = np.flatnonzero(position < slots)
    k = position[shown]
    propensity = (1.0 - share) * (base[shown] == k) + share / n[shown]
    p = truth.probabilities(frame[c.VIEWER_ID].to_numpy()[shown], frame[c.POST_ID].to_numpy()[shown],
                            frame[c.TS].iloc[shown])
    examined = rng.random(len(shown)) < examine_probability(k)
    actions = sum((rng.random(len(shown)) < p[a]).astype(np.float64) for a in POSITIVE_ACTIONS)
    return pd.DataFrame({"row": shown, c.POSITION: k, c.PROPENSITY: propensity, "reward": examined * actions,
                         "explored": explored[shown]})


def _target(name: str, log: SlotLog, frame: pd.DataFrame, scores: np.ndarray, slots: int, table: CrossFitTable,
            keys: np.ndarray, unit_fold: np.ndarray, logged_rows: np.ndarray, log_fold: np.ndarray) -> Target:
    requests = frame[c.REQUEST_ID].to_numpy()
    position = served_positions(requests, scores, slots)
    rows = np.flatnonzero(position < slots)
    unit = unit_codes_like(requests[logged_rows], requests[rows])
    known = unit >= 0
    rows, unit = rows[known], unit[known]
    q_slate = table.predict(keys[rows], position[rows], unit_fold[unit])
    q_logged = table.predict(keys[logged_rows], log.position, log_fold)
    return Target.from_slate(name, log, unit=unit, position=position[rows], item=rows, q_slate=q_slate,
                             q_logged=q_logged)


def ope_lift(frame: pd.DataFrame, served: pd.DataFrame, treatment_scores: np.ndarray, control_scores: np.ndarray,
             *, slots: int, seed: int, names=("champion", "chronological")) -> dict:
    """Lift of treatment over control (engagements per request) from a served log (rows of
    `frame`, positions, propensities, rewards): IPS, SNIPS and DR with bootstrap-by-viewer CIs.
    Items are frame rows, so both targets rank the same candidates the log drew from."""
    rows = served["row"].to_numpy()
    requests = frame[c.REQUEST_ID].to_numpy()
    log = SlotLog.build(unit=requests[rows], cluster=frame[c.VIEWER_ID].to_numpy()[rows],
                        position=served[c.POSITION].to_numpy(), item=rows, reward=served["reward"].to_numpy(),
                        propensity=served[c.PROPENSITY].to_numpy())
    # reward model for DR: the treatment's score decile x recency decile x position, cross-fitted by viewer
    keys = 10 * _deciles(treatment_scores) + _deciles(control_scores)
    log_fold = folds(log.cluster, 2, seed)
    unit_fold = np.zeros(log.unit.max() + 1, dtype=np.int64)
    unit_fold[log.unit] = log_fold
    table = CrossFitTable(keys[rows], log.position, log.reward, log_fold)
    treatment = _target(names[0], log, frame, treatment_scores, slots, table, keys, unit_fold, rows, log_fold)
    control = _target(names[1], log, frame, control_scores, slots, table, keys, unit_fold, rows, log_fold)
    result = lift(log, treatment, control, seed=seed)
    return {"requests": log.n_units, "slots": log.n_slots, "engagements": float(log.reward.sum()),
            "matched_slots": {names[0]: int((treatment.prob > 0).sum()), names[1]: int((control.prob > 0).sum())},
            "estimators": result}


def truth_lift(frame: pd.DataFrame, treatment_scores: np.ndarray, control_scores: np.ndarray, truth: TruthModel,
               slots: int) -> dict:
    """Expected engagements per session of each ranking over ALL sessions (the A/B's estimand)."""
    p = truth.probabilities(frame[c.VIEWER_ID].to_numpy(), frame[c.POST_ID].to_numpy(), frame[c.TS])
    engage = sum(p[a] for a in POSITIVE_ACTIONS)
    requests = frame[c.REQUEST_ID].to_numpy()
    n = len(np.unique(requests))
    out = {}
    for name, scores in (("treatment", treatment_scores), ("control", control_scores)):
        position = served_positions(requests, scores, slots)
        shown = position < slots
        out[name] = float((examine_probability(np.minimum(position, slots)) * engage * shown).sum() / n)
    out["lift_pct"] = 100.0 * (out["treatment"] / out["control"] - 1.0)
    return out


def simulated_lift(frame: pd.DataFrame, champion_scores: np.ndarray, truth: TruthModel, ab: dict, *, slots: int,
                   shares=(0.05, 0.25, 1.0), seed: int = 0) -> dict:
    """The A/B's lift vs OPE's estimate of it from exploring logs (one log per exploration share)."""
    chrono = chronological_scores(frame)
    ab_ci = ab["engagements"]["ci95_pct"]
    out = {"ab_test": {"lift_pct": ab["engagements"]["lift_pct"], "ci95_pct": ab_ci},
           "truth_all_sessions": truth_lift(frame, champion_scores, chrono, truth, slots),
           "logging_policy": "champion's page, or on `share` of requests the top of a uniformly random "
                             "permutation of the request's candidates", "by_share": {}}
    for i, share in enumerate(shares):
        served = exploring_log(frame, champion_scores, truth, slots=slots, share=share, seed=seed + i)
        estimate = ope_lift(frame, served, champion_scores, chrono, slots=slots, seed=seed + i)
        ab_width = ab_ci[1] - ab_ci[0]
        for e in estimate["estimators"].values():
            e["inside_ab_ci95"] = bool(ab_ci[0] <= e["lift_pct"] <= ab_ci[1])
            # an interval narrows as 1/sqrt(requests): how many logged requests would make OPE's as
            # narrow as the A/B's (at this exploration share)
            width = e["ci95_pct"][1] - e["ci95_pct"][0]
            e["requests_for_ab_width"] = int(np.ceil(estimate["requests"] * (width / ab_width) ** 2))
        estimate["explored_requests"] = int(served.loc[served["explored"], "row"].pipe(
            lambda r: frame[c.REQUEST_ID].iloc[r].nunique()))
        out["by_share"][str(share)] = estimate
    return out


def logged_lift(impressions: pd.DataFrame, champion_scores: np.ndarray, reward: np.ndarray, *, seed: int = 0) -> dict:
    """Champion vs chronological on pages a randomised policy served: `impressions` rows (request,
    viewer, post, position, created_at, propensity) of requests whose every row has a propensity,
    with the champion's score and the engagement reward of each row."""
    have = impressions.groupby(c.REQUEST_ID)[c.PROPENSITY].transform(lambda p: p.notna().all()).to_numpy(bool)
    frame = impressions[have].reset_index(drop=True)
    if frame.empty:
        raise ValueError("no request with logged propensities: serve with the exploration share on "
                         "(serving/config.toml [exploration]) or import logs that carry them")
    served = pd.DataFrame({"row": np.arange(len(frame)), c.POSITION: frame[c.POSITION].to_numpy(),
                           c.PROPENSITY: frame[c.PROPENSITY].to_numpy(), "reward": np.asarray(reward)[have]})
    # The targets reorder each page over the page's own positions (positions are offset on later pages)
    page_start = frame.groupby(c.REQUEST_ID)[c.POSITION].transform("min").to_numpy()
    served[c.POSITION] = served[c.POSITION] - page_start
    slots = int(frame.groupby(c.REQUEST_ID).size().max())
    return ope_lift(frame, served, np.asarray(champion_scores)[have], chronological_scores(frame),
                    slots=slots, seed=seed)
