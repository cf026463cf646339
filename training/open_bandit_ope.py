"""The Open Bandit Dataset's own benchmark of off-policy evaluation, on Loupe's estimators.

ZOZOTOWN ran two logging policies side by side in each campaign: a uniform random one and a
Bernoulli Thompson Sampling (BTS) one. Judge BTS off-policy from the *random* policy's logs and
compare with what BTS actually earned in its own logs (its on-policy CTR): the relative error per
estimator is how far off-policy evaluation lands from the truth on real data.

BTS's action distribution is context free: each round it draws theta_a ~ Beta(alpha_a, beta_a) per
item and shows the three best, so P(item a at position k) is estimated by Monte Carlo from the
prior ZOZOTOWN used (obp's `BernoulliTS(is_zozotown_prior=True).compute_batch_action_dist`, read
from the sdist's prior_bts.yaml; reimplemented here rather than installing obp and its pins).

Input is the landing contract only: impressions (with `propensity` and `model_version`
`obd-<policy>-<campaign>`) and `click` engagements, as `data.importers.open_bandit` writes them.
The value is the CTR per slot (a round is one slot), so IPS = mean(click * pi / p).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data import columns as c
from data.importers import open_bandit as obd
from training.ope import BOOTSTRAP_REPLICATES, CrossFitTable, SlotLog, Target, estimate, folds

LEN_LIST = 3  # positions of the ZOZOTOWN widget
N_SIMULATIONS = 100_000  # obp's default for the Monte Carlo action distribution


def bts_action_distribution(alpha: np.ndarray, beta: np.ndarray, len_list: int = LEN_LIST,
                            n_sim: int = N_SIMULATIONS, seed: int = 12345) -> np.ndarray:
    """(n_items, len_list): P(item at position) when each round ranks items by a Beta draw."""
    rng = np.random.default_rng(seed)
    n_items = len(alpha)
    counts = np.zeros((n_items, len_list))
    done = 0
    while done < n_sim:
        b = min(10_000, n_sim - done)
        theta = rng.beta(alpha, beta, size=(b, n_items))
        top = np.argsort(-theta, axis=1)[:, :len_list]
        for k in range(len_list):
            counts[:, k] += np.bincount(top[:, k], minlength=n_items)
        done += b
    return counts / n_sim


def rounds_from_landing(landing: Path | str) -> pd.DataFrame:
    """One row per Open Bandit round in a landing folder: policy, campaign, item, position,
    propensity, click (from the `click` engagements with the impression's request_id)."""
    landing = Path(landing)
    files = sorted(landing.glob(f"impressions/*/{obd.FILE_PREFIX}-*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{landing}: no Open Bandit impressions (run `make run-open-bandit` first)")
    imp = pd.concat([pd.read_json(f, lines=True, dtype=False) for f in files], ignore_index=True)
    eng_files = sorted(landing.glob(f"engagements/*/{obd.FILE_PREFIX}-*.jsonl"))
    eng = (pd.concat([pd.read_json(f, lines=True, dtype=False) for f in eng_files], ignore_index=True)
           if eng_files else pd.DataFrame(columns=[c.REQUEST_ID, c.POST_ID, c.TYPE]))
    clicks = eng[eng[c.TYPE] == "click"][[c.REQUEST_ID, c.POST_ID]].drop_duplicates().assign(click=1.0)
    frame = imp.merge(clicks, on=[c.REQUEST_ID, c.POST_ID], how="left")
    frame["click"] = frame["click"].fillna(0.0)
    parts = frame[c.MODEL_VERSION].str.split("-", expand=True)
    frame["policy"], frame["campaign"] = parts[1], parts[2]
    frame["item"] = [int(p) - obd.CAMPAIGN_BASE[k] for p, k in zip(frame[c.POST_ID], frame["campaign"])]
    return frame[[c.REQUEST_ID, "policy", "campaign", "item", c.POSITION, c.PROPENSITY, "click"]]


def _per_slot_log(rounds: pd.DataFrame) -> SlotLog:
    n = len(rounds)
    return SlotLog.build(unit=np.arange(n), position=rounds[c.POSITION].to_numpy(), item=rounds["item"].to_numpy(),
                         reward=rounds["click"].to_numpy(), propensity=rounds[c.PROPENSITY].to_numpy())


def evaluate_campaign(rounds: pd.DataFrame, campaign: str, alpha: np.ndarray, beta: np.ndarray, *,
                      n_sim: int = N_SIMULATIONS, replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> dict:
    """BTS's CTR estimated from the random policy's rounds vs its on-policy CTR, per estimator."""
    random_rounds = rounds[(rounds["policy"] == "random") & (rounds["campaign"] == campaign)]
    bts_rounds = rounds[(rounds["policy"] == "bts") & (rounds["campaign"] == campaign)]
    if random_rounds.empty or bts_rounds.empty:
        raise ValueError(f"campaign {campaign!r}: need both the random and the bts policy's rounds")
    n_items = len(alpha)
    if random_rounds["item"].max() >= n_items:
        raise ValueError(f"campaign {campaign!r}: item ids beyond the prior's {n_items} items")
    dist = bts_action_distribution(alpha, beta, LEN_LIST, n_sim, seed)
    log = _per_slot_log(random_rounds)
    fold = folds(log.cluster, 2, seed)
    q = CrossFitTable(log.item, log.position, log.reward, fold)
    items = np.arange(n_items)
    # q_target of a slot: sum_a pi(a at k) q(a, k), with the q fitted away from the slot's fold
    expected = np.zeros((q.n_folds, LEN_LIST))
    for f in range(q.n_folds):
        for k in range(LEN_LIST):
            expected[f, k] = dist[:, k] @ q.predict(items, np.full(n_items, k), np.full(n_items, f))
    target = Target("bts", dist[log.item, log.position], q.predict(log.item, log.position, fold),
                    expected[fold, log.position])
    estimates = estimate(log, target, replicates=replicates, seed=seed)
    on_policy_log = _per_slot_log(bts_rounds)
    truth = estimate(on_policy_log, Target("bts_on_policy", on_policy_log.propensity), ("ips",),
                     replicates=replicates, seed=seed + 1)["ips"]
    random_ctr = float(random_rounds["click"].mean())
    return {
        "campaign": campaign,
        "items": n_items,
        "rounds": {"random": len(random_rounds), "bts": len(bts_rounds)},
        "clicks": {"random": int(random_rounds["click"].sum()), "bts": int(bts_rounds["click"].sum())},
        "random_policy_ctr": random_ctr,
        "bts_on_policy_ctr": {"value": truth.value, "ci95": list(truth.ci95)},
        "estimates": {
            name: {**e.to_dict(), "relative_error": abs(e.value - truth.value) / truth.value,
                   "covers_on_policy": e.covers(truth.value)}
            for name, e in estimates.items()
        },
    }


def benchmark(landing: Path | str, sdist: Path | str, campaigns=obd.CAMPAIGNS, **kwargs) -> dict:
    """`evaluate_campaign` for every campaign whose random and bts rounds are in the landing folder."""
    rounds = rounds_from_landing(landing)
    source = obd.OpenBanditSource(sdist)
    out = {}
    for campaign in campaigns:
        alpha, beta = source.bts_prior(campaign)
        out[campaign] = evaluate_campaign(rounds, campaign, alpha, beta, **kwargs)
    return out
