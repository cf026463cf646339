"""Training components on small hand-made frames: metrics (against scikit-learn), labels, the
bad-input refusals, rankers that learn and round-trip, config validation. Heads from the vocabulary,
skipping and the promotion gate: tests/training/test_training_team_data.py."""

from __future__ import annotations

import math
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, ndcg_score

from data import columns as c
from data.vocabulary import load_vocabulary
from training import metrics
from training.ab_test import served_positions
from training.baselines import TRUE_VALUE
from training.config import TrainingConfig
from training.errors import TrainingDataError
from training.evaluate import ndcg10, ranking_metrics
from training.heads import value_heads
from training.labels import attach_labels
from training.models import LAMBDARANK, VALUE_MODEL, Ranker, lgb_params, train_heads, train_lambdarank, validate

CFG = TrainingConfig.load().model_copy(update={"min_positive_requests": 1})
HEADS = value_heads(load_vocabulary(), CFG)  # the shipped vocabulary's heads


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.integers(2, 12), min_size=1, max_size=8), st.integers(0, 2**31 - 1), st.sampled_from([3, 10]))
def test_ndcg_matches_scikit_learn_per_list(sizes, seed, k):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    gains = rng.integers(0, 4, len(groups)).astype(float)
    scores = rng.random(len(groups))  # continuous: no ties, so the tie rule does not matter
    ours = metrics.ndcg_per_group(groups, gains, scores, k)
    for g in range(len(sizes)):
        m = groups == g
        if gains[m].sum() == 0:
            assert math.isnan(ours[g])
        else:
            assert ours[g] == pytest.approx(ndcg_score([gains[m]], [scores[m]], k=k), abs=1e-9)


def test_map_matches_scikit_learn():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(6), 9)
    relevant = rng.random(len(groups)) < 0.3
    relevant[::9] = True  # every group holds a relevant row
    scores = rng.random(len(groups))
    expected = np.mean([average_precision_score(relevant[groups == g], scores[groups == g]) for g in range(6)])
    assert metrics.mean_average_precision(groups, relevant, scores) == pytest.approx(expected)


def test_ties_are_not_broken_by_row_order():
    """A constant scorer must not inherit the (logging policy's) row order."""
    groups = np.repeat(np.arange(400), 10)
    gains = np.tile(np.r_[1.0, np.zeros(9)], 400)  # the best item always first in row order
    constant = metrics.ndcg(groups, gains, np.zeros(len(groups)), 10)
    assert 0.2 < constant < 0.5  # ~ the random expectation, not 1.0


def test_calibration_of_a_calibrated_predictor_is_near_zero():
    rng = np.random.default_rng(0)
    p = rng.random(200_000) * 0.2
    y = rng.random(len(p)) < p
    cal = metrics.calibration(y, p)
    assert cal["ece"] < 0.005
    assert metrics.calibration(y, np.full(len(p), 0.5))["ece"] > 0.3


def _impressions(n_requests=2, per=3):
    return pd.DataFrame({c.REQUEST_ID: np.repeat([f"r{i}" for i in range(n_requests)], per),
                         c.POST_ID: np.arange(n_requests * per) + 100})


def test_labels_from_attributed_engagements():
    imp = _impressions()
    eng = pd.DataFrame({
        c.REQUEST_ID: ["r0", "r0", "r0", "r0", "r1", None, "r9"],
        c.POST_ID: [100, 100, 101, 102, 103, 104, 100],
        c.TYPE: ["like", "dwell", "dwell", "hide", "share", "like", "like"],
        c.VALUE: [None, 12_000.0, 3_000.0, None, None, None, None],
    })
    out = attach_labels(imp, eng, HEADS, CFG).set_index(c.POST_ID)
    assert out.loc[100, ["y_like", "y_long_dwell"]].tolist() == [1, 1]
    assert out.loc[101, "y_long_dwell"] == 0  # a short dwell is not a long dwell
    assert out.loc[102, "y_negative"] == 1 and out.loc[102, "grade"] == 0 and out.loc[102, "value"] < 0
    assert out.loc[103, "y_share"] == 1 and out.loc[103, "grade"] == 3  # value 5 reaches 0.5, 2, 4
    assert out.loc[104, "value"] == 0  # no request id: attributes to nothing
    assert out.loc[100, "grade"] == 2  # like + long dwell = 2
    assert out.loc[105, "grade"] == 0


def _learnable(n_requests=300, per=12, seed=0):
    rng = np.random.default_rng(seed)
    n = n_requests * per
    x = rng.normal(size=(n, 3)).astype(np.float32)
    p = 1 / (1 + np.exp(-(2.5 * x[:, 0] - 2.0)))
    frame = pd.DataFrame(x, columns=["v__a", "v__b", "v__c"])
    frame[c.REQUEST_ID] = np.repeat([f"r{i:05d}" for i in range(n_requests)], per)
    frame[c.POSITION] = np.tile(np.arange(per), n_requests)
    for head in HEADS.names:
        frame[f"y_{head}"] = (rng.random(n) < (p if head != "negative" else 0.05)).astype(np.int8)
    frame["value"] = frame["y_like"].astype(float)
    frame["grade"] = frame["y_like"] * 2 + frame["y_comment"]
    return frame


def test_rankers_learn_and_round_trip(tmp_path):
    cfg = CFG.model_copy(update={"lambdarank": {**CFG.lambdarank, "num_boost_round": 30},
                                 "heads": {**CFG.heads, "num_boost_round": 30}})
    train, valid = _learnable(seed=1), _learnable(seed=2)
    features = ["v__a", "v__b", "v__c"]
    trainers = {LAMBDARANK: train_lambdarank,
                VALUE_MODEL: lambda *args: train_heads(*args, weights=HEADS.weights)}
    for kind, trainer in trainers.items():
        ranker = trainer(train, valid, features, cfg)
        assert ranker.kind == kind
        scores = ranker.predict(ranker.matrix(valid))
        groups = valid[c.REQUEST_ID].to_numpy()
        reversed_ndcg = metrics.ndcg(groups, valid["grade"], -scores, 10)
        assert metrics.ndcg(groups, valid["grade"], scores, 10) > reversed_ndcg + 0.1
        loaded = Ranker.load(ranker.save(tmp_path / kind))
        np.testing.assert_array_equal(loaded.predict(loaded.matrix(valid)), scores)


def _position_biased(seed: int, explored: bool, n_requests: int = 500, per: int = 30) -> pd.DataFrame:
    """A log whose order came from a feature unrelated to relevance (or, explored, from a coin), and
    whose viewers engage only with what they looked at, looking less the lower a post is."""
    rng = np.random.default_rng(seed)
    n = n_requests * per
    frame = pd.DataFrame(rng.normal(size=(n, 2)).astype(np.float32), columns=["v__relevant", "v__served_order"])
    frame[c.REQUEST_ID] = np.repeat([f"r{i:05d}" for i in range(n_requests)], per)
    order = pd.Series(rng.normal(size=n)) if explored else frame["v__served_order"] + rng.normal(size=n)
    frame[c.POSITION] = order.groupby(frame[c.REQUEST_ID]).rank(ascending=False, method="first").astype(int) - 1
    frame["relevance"] = 1 / (1 + np.exp(1 - 2 * frame["v__relevant"]))
    examined = rng.random(n) < 1 / (1 + frame[c.POSITION]) ** 1.2
    frame["grade"] = 2 * ((rng.random(n) < frame["relevance"]) & examined)
    return frame.sort_values([c.REQUEST_ID, c.POSITION]).reset_index(drop=True)


def test_a_position_debiased_ranker_learns_relevance_where_the_log_taught_position():
    """Trained on what an irrelevant order put on top (looked at, so engaged with), LambdaRank
    learns that order back; told each impression's position (`position_debiased`), LightGBM's
    unbiased LambdaMART learns the position's bias apart and ranks by relevance. Validated on
    explored pages (a random order), judged by the hidden relevance."""
    train, valid, test = _position_biased(1, False), _position_biased(2, True), _position_biased(3, False)
    features, groups = ["v__relevant", "v__served_order"], test[c.REQUEST_ID].to_numpy()
    ndcg = {}
    for debiased in (False, True):
        cfg = CFG.model_copy(update={"position_debiased": debiased,
                                     "lambdarank": {**CFG.lambdarank, "num_boost_round": 60, "min_data_in_leaf": 20}})
        ranker = train_lambdarank(train, valid, features, cfg)
        ndcg[debiased] = metrics.ndcg(groups, test["relevance"].to_numpy(), ranker.predict(ranker.matrix(test)), 10)
    assert ndcg[True] > ndcg[False] + 0.03, ndcg


@pytest.mark.parametrize("with_truth", [True, False])
def test_segment_ndcg_is_the_headline_ndcg_of_the_full_metrics(with_truth):
    frame = _learnable(seed=6)
    if with_truth:
        frame[TRUE_VALUE] = np.random.default_rng(1).normal(size=len(frame))
    scores = np.random.default_rng(2).random(len(frame))
    assert ndcg10(frame, scores) == ranking_metrics(frame, scores)["ndcg10"]


def test_heads_sharing_one_binned_dataset_equal_heads_binned_each_on_their_own():
    """train_heads bins the feature matrix once and swaps each head's labels in: the models are
    those of a Dataset built per head (LightGBM's bins depend on the features only)."""
    cfg = CFG.model_copy(update={"heads": {**CFG.heads, "num_boost_round": 20}})
    train, valid = _learnable(seed=4), _learnable(seed=5)
    features = ["v__a", "v__b", "v__c"]
    shared = train_heads(train, valid, features, cfg, weights=HEADS.weights)
    params, rounds, patience = lgb_params(cfg.heads, cfg.seed)
    for head in HEADS.weights:
        dtrain = lgb.Dataset(train[features].to_numpy(np.float32), train[f"y_{head}"], feature_name=features)
        dvalid = lgb.Dataset(valid[features].to_numpy(np.float32), valid[f"y_{head}"], reference=dtrain)
        alone = lgb.train(params, dtrain, rounds, valid_sets=[dvalid], valid_names=["valid"],
                          callbacks=[lgb.early_stopping(patience, verbose=False)])
        assert shared.boosters[head].model_to_string() == alone.model_to_string(), head


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.iloc[0:0], "empty"),
        (lambda f: f.drop(columns=["v__b"]), "feature columns missing"),
        (lambda f: f.assign(request_id="one"), "single request group"),
        (lambda f: f.assign(grade=0), "no positives"),
    ],
)
def test_bad_training_sets_fail_before_training(mutate, message):
    with pytest.raises(TrainingDataError, match=message):
        validate(mutate(_learnable(20)), ["v__a", "v__b", "v__c"], "home train", CFG)


def test_train_heads_refuses_a_head_it_is_given_without_positives():
    """train_heads trains exactly the heads it is handed; picking them is usable_heads' job."""
    train = _learnable(50).assign(y_share=0)
    with pytest.raises(TrainingDataError, match="share"):
        train_heads(train, _learnable(50, seed=3), ["v__a", "v__b", "v__c"], CFG, weights=HEADS.weights)


def test_served_positions_follow_scores_within_each_request():
    groups = np.array(["a", "a", "a", "b", "b"])
    pos = served_positions(groups, np.array([0.1, 0.9, 0.5, 2.0, 3.0]), slots=10)
    assert pos.tolist() == [2, 0, 1, 1, 0]


def test_a_vocabulary_head_without_a_weight_is_a_config_error_naming_it(tmp_path):
    text = Path(TrainingConfig.load().source).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("negative = -12.0", "hate = -12.0"))
    with pytest.raises(ValueError, match=r"no weight for head.*'negative'"):
        value_heads(load_vocabulary(), TrainingConfig.load(bad))
