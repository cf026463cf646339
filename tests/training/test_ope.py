"""Off-policy estimators on synthetic ranking logs whose truth is known exactly.

Every request has `N` candidates of known click probability g; a post shown at position k is
clicked with probability theta_k * g (item-position model). The logging policy serves its own
ranking, except on an exploring share of requests where the page is a uniformly random permutation
of all candidates, so every (candidate, position) has a known, positive propensity."""

from __future__ import annotations

import numpy as np
import pytest

from training.ope import CrossFitTable, SlotLog, Target, estimate, folds, lift

N, K = 6, 3  # candidates per request, positions shown
THETA = np.array([1.0, 0.7, 0.5])  # examination per position


def world(seed: int, units: int = 3000, explore: float = 0.3):
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.02, 0.5, (units, N))
    base = np.argsort(-(g + rng.normal(0, 0.3, g.shape)), axis=1)  # the logging policy's ranking
    explored = rng.random(units) < explore
    shuffled = np.argsort(rng.random((units, N)), axis=1)
    shown = np.where(explored[:, None], shuffled, base)[:, :K]  # candidate index per position
    # P(candidate at k) = (1 - eps) 1[base puts it at k] + eps / N
    prop = (1 - explore) * (shown == base[:, :K]) + explore / N
    u = np.repeat(np.arange(units), K)
    k = np.tile(np.arange(K), units)
    item = (u * N + shown.ravel())  # globally unique candidate ids
    p_click = THETA[k] * g[u, shown.ravel()]
    reward = (rng.random(len(u)) < p_click).astype(float)
    log = SlotLog.build(unit=u, position=k, item=item, reward=reward, propensity=prop.ravel())
    return g, log


def oracle_target(g, log, q_table=None, fold=None):
    """Deterministic: the best candidates first. Truth: mean over requests of sum_k theta_k g."""
    units = g.shape[0]
    top = np.argsort(-g, axis=1)[:, :K]
    truth = float((THETA * np.take_along_axis(g, top, 1)).sum(1).mean())
    u, k = np.repeat(np.arange(units), K), np.tile(np.arange(K), units)
    item = u * N + top.ravel()
    q_slate = q_logged = None
    if q_table is not None:
        q_slate = q_table.predict(item, k, fold_of_unit(fold, log)[u])
        q_logged = q_table.predict(log.item, log.position, fold)
    return Target.from_slate("oracle", log, unit=u, position=k, item=item, q_slate=q_slate,
                             q_logged=q_logged), truth


def uniform_target(g, log, q_table=None, fold=None):
    """Stochastic: a uniformly random page. pi(i at k) = 1 / N for every candidate."""
    truth = float(THETA.sum() * g.mean(1).mean())
    prob = np.full(log.n_slots, 1.0 / N)
    q_logged = q_target = None
    if q_table is not None:
        units = g.shape[0]
        uf = fold_of_unit(fold, log)
        cand = np.arange(units * N)
        q_target = np.zeros(log.n_slots)
        for k in range(K):
            q_k = q_table.predict(cand, np.full(len(cand), k), uf[cand // N]).reshape(units, N).mean(1)
            rows = log.position == k
            q_target[rows] = q_k[log.unit[rows]]
        q_logged = q_table.predict(log.item, log.position, fold)
    return Target("uniform", prob, q_logged, q_target), truth


def fold_of_unit(fold, log):
    out = np.zeros(log.unit.max() + 1, dtype=np.int64)
    out[log.unit] = fold
    return out


def reward_model(log):
    fold = folds(log.cluster, 2, seed=3)
    # the candidate id is the key: with one observation per candidate the table falls back to the
    # position mean, a weak but honest model (DR stays unbiased whatever q is)
    return CrossFitTable(log.item // N, log.position, log.reward, fold), fold


@pytest.mark.parametrize("make_target", [oracle_target, uniform_target])
def test_estimates_cover_the_truth_and_snips_dr_vary_less_than_ips(make_target):
    values = {e: [] for e in ("ips", "snips", "dr")}
    covered = {e: 0 for e in values}
    seeds = range(30)
    for seed in seeds:
        g, log = world(seed)
        table, fold = reward_model(log)
        target, truth = make_target(g, log, table, fold)
        for name, est in estimate(log, target, replicates=200, seed=seed).items():
            values[name].append(est.value - truth)
            covered[name] += est.covers(truth)
    for name in values:
        errors = np.array(values[name])
        # unbiased: the mean error over 30 logs is within 3 standard errors of 0
        assert abs(errors.mean()) < 3 * errors.std(ddof=1) / np.sqrt(len(errors)) + 1e-3, name
        assert covered[name] / len(seeds) >= 0.8, (name, covered[name])
    var = {n: np.var(v) for n, v in values.items()}
    assert var["snips"] < var["ips"] and var["dr"] < var["ips"], var


def test_a_target_equal_to_the_logging_policys_own_choices_is_estimated_on_policy():
    g, log = world(1, explore=0.0)  # no exploration: propensity 1 for every served slot
    assert np.allclose(log.propensity, 1.0)
    same = Target("logging", np.ones(log.n_slots))
    est = estimate(log, same, ("ips", "snips"), replicates=100)
    on_policy = log.reward.sum() / log.n_units
    assert est["ips"].value == pytest.approx(on_policy) and est["snips"].value == pytest.approx(on_policy)


def test_lift_of_the_oracle_over_uniform_matches_the_truth():
    g, log = world(5, units=6000, explore=0.5)
    table, fold = reward_model(log)
    oracle, v_oracle = oracle_target(g, log, table, fold)
    uniform, v_uniform = uniform_target(g, log, table, fold)
    true_lift = 100 * (v_oracle / v_uniform - 1)
    result = lift(log, oracle, uniform, replicates=300)
    for name, r in result.items():
        lo, hi = r["ci95_pct"]
        assert lo < r["lift_pct"] < hi
        assert lo - 5 < true_lift < hi + 5, (name, true_lift, r)  # a lift of ~+80 %
    assert result["dr"]["se_pct"] < result["ips"]["se_pct"]


def test_per_slot_value_is_a_click_through_rate():
    g, log = world(2)
    per_slot = SlotLog.build(unit=np.arange(log.n_slots), position=log.position, item=log.item,
                             reward=log.reward, propensity=np.ones(log.n_slots), cluster=log.unit)
    est = estimate(per_slot, Target("same", np.ones(log.n_slots)), ("ips",), replicates=50)["ips"]
    assert est.value == pytest.approx(log.reward.mean())
    assert est.n_units == log.n_slots


def test_bad_logs_and_targets_are_refused_with_a_reason():
    ok = dict(unit=[0, 0], position=[0, 1], item=[1, 2], reward=[1.0, 0.0])
    with pytest.raises(ValueError, match="propensity outside"):
        SlotLog.build(**ok, propensity=[0.5, 0.0])
    with pytest.raises(ValueError, match="propensity outside"):
        SlotLog.build(**ok, propensity=[0.5, np.nan])
    with pytest.raises(ValueError, match="reward has 2"):
        SlotLog.build(**{**ok, "item": [1]}, propensity=[0.5, 0.5])
    log = SlotLog.build(**ok, propensity=[0.5, 0.5])
    with pytest.raises(ValueError, match="two items at one"):
        Target.from_slate("t", log, unit=[0, 0], position=[0, 0], item=[1, 2])
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate(log, Target("t", np.ones(2)), ("magic",))


def test_from_slate_matches_the_logged_slots_it_agrees_with():
    log = SlotLog.build(unit=[0, 0, 1, 1], position=[0, 1, 0, 1], item=[10, 11, 20, 21],
                        reward=[1.0, 0.0, 0.0, 1.0], propensity=[0.5, 0.5, 0.25, 0.25])
    t = Target.from_slate("t", log, unit=[0, 0, 1], position=[0, 1, 0], item=[11, 10, 20], q_slate=[0.1, 0.2, 0.3])
    assert t.prob.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert t.q_target.tolist() == [0.1, 0.2, 0.3, 0.0]  # unit 1's position 1 is not served by the target


def test_cross_fitted_table_never_uses_a_slots_own_fold():
    key = np.array([1, 1, 1, 1])
    pos = np.array([0, 0, 0, 0])
    reward = np.array([1.0, 1.0, 0.0, 0.0])
    fold = np.array([0, 0, 1, 1])
    q = CrossFitTable(key, pos, reward, fold, prior=0.0)
    assert q.predict(key, pos, fold).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert q.predict(np.array([9]), np.array([0]), np.array([0])).tolist() == [0.0]  # unknown key: position mean
