"""Training with the labels a team has, on tiny hand-made frames: heads from the log vocabulary
(a click-only vocabulary or export trains one head), heads without positives dropped, LambdaRank and
the value model independent, a surface without data and too little data refused with the numbers
before any training, and the promotion gate against chronological order and popularity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data import columns as c
from data.vocabulary import Vocabulary, load_vocabulary
from tests.training.examples import CFG, SHIPPED, examples
from training.dataset import write_examples
from training.errors import NotEnoughData
from training.heads import usable_heads, value_heads
from training.labels import attach_labels
from training.models import LAMBDARANK, VALUE_MODEL
from training.promotion import decide
from training.train import choose_challenger, load_split, train_rankers

DAYS = ["2019-11-09", "2019-11-10", "2019-11-11"]  # train, validation, test for test day 2019-11-11


def click_only_vocabulary(tmp_path) -> Vocabulary:
    path = tmp_path / "vocabulary.toml"
    path.write_text('[engagement_types]\nclick = { role = "positive", head = "click" }\n'
                    'view = { role = "neutral" }\n[impressions]\nsources = ["other"]\n')
    return Vocabulary.load(path)


def write_days(lake, frames: dict[str, list[pd.DataFrame]]) -> None:
    for day, parts in frames.items():
        write_examples(pd.concat(parts, ignore_index=True), lake, day)


def test_click_only_vocabulary_labels_one_head(tmp_path):
    heads = value_heads(click_only_vocabulary(tmp_path), CFG)
    assert heads.names == ("click",) and heads.weights == {"click": 1.0}
    imp = pd.DataFrame({c.REQUEST_ID: ["r0"] * 3, c.POST_ID: [1, 2, 3]})
    eng = pd.DataFrame({c.REQUEST_ID: ["r0", "r0", "r0"], c.POST_ID: [1, 2, 2],
                        c.TYPE: ["click", "view", "like"], c.VALUE: [None, None, None]})
    out = attach_labels(imp, eng, heads, CFG).set_index(c.POST_ID)
    assert [col for col in out.columns if col.startswith("y_")] == ["y_click"]
    assert out["y_click"].tolist() == [1, 0, 0]  # a view is neutral; `like` is not in this vocabulary
    assert out.loc[1, "grade"] == 1 and out.loc[1, "value"] == 1.0


def test_shipped_vocabulary_labels_a_click_and_only_long_dwells():
    imp = pd.DataFrame({c.REQUEST_ID: ["r0"] * 3, c.POST_ID: [1, 2, 3]})
    eng = pd.DataFrame({c.REQUEST_ID: ["r0", "r0", "r0"], c.POST_ID: [1, 2, 3], c.TYPE: ["click", "dwell", "dwell"],
                        c.VALUE: [None, 9_999.0, 10_000.0]})
    out = attach_labels(imp, eng, SHIPPED, CFG).set_index(c.POST_ID)
    assert out.loc[1, "y_click"] == 1 and out.loc[2, "y_long_dwell"] == 0 and out.loc[3, "y_long_dwell"] == 1


def test_a_click_only_export_trains_a_one_head_value_model_and_a_lambdarank(tmp_path):
    """The shipped vocabulary declares seven heads; a team's export only has clicks (no negatives)."""
    write_days(tmp_path, {d: [examples(d, "home", SHIPPED, positives={"click": 1.0})] for d in DAYS})
    split = load_split(tmp_path, "home", DAYS[-1], CFG)
    trained = train_rankers(split, CFG, SHIPPED)
    assert set(trained.rankers) == {LAMBDARANK, VALUE_MODEL} and not trained.failures
    value = trained.rankers[VALUE_MODEL]
    assert list(value.boosters) == ["click"] and value.weights == {"click": 1.0}
    assert set(trained.dropped_heads) == set(SHIPPED.names) - {"click"}
    assert "no positives in the training split" in trained.dropped_heads["negative"]
    x = value.matrix(split.test)
    np.testing.assert_allclose(value.predict(x), value.boosters["click"].predict(x))
    kind, ndcg = choose_challenger(trained.rankers, split.valid)
    assert kind in trained.rankers and all(math.isfinite(v) for v in ndcg.values())


def test_a_head_with_positives_in_training_only_is_dropped_with_the_split_named():
    heads = SHIPPED
    train = examples(DAYS[0], "home", heads, positives={"like": 1.0, "share": 0.5})
    valid = examples(DAYS[1], "home", heads, positives={"like": 1.0})
    kept, dropped = usable_heads(train, valid, heads)
    assert kept == {"like": 1.0}
    assert dropped["share"].startswith("no positives in the validation split")
    assert dropped["comment"].startswith("no positives in the training split")


def test_lambdarank_and_the_value_model_train_independently(tmp_path):
    # Positives of one head on the training day and another on the validation day: LambdaRank (on
    # the graded label) trains, the value model has no head with positives in both and is reported.
    write_days(tmp_path, {DAYS[0]: [examples(DAYS[0], "home", SHIPPED, positives={"like": 1.0})],
                          DAYS[1]: [examples(DAYS[1], "home", SHIPPED, positives={"comment": 1.0})],
                          DAYS[2]: [examples(DAYS[2], "home", SHIPPED, positives={"like": 1.0})]})
    trained = train_rankers(load_split(tmp_path, "home", DAYS[-1], CFG), CFG, SHIPPED)
    assert set(trained.rankers) == {LAMBDARANK}
    assert "no head with a positive weight has positives in both splits" in trained.failures[VALUE_MODEL]


def test_a_failing_lambdarank_leaves_the_value_model_as_the_challenger(tmp_path):
    write_days(tmp_path, {d: [examples(d, "home", SHIPPED, positives={"click": 1.0})] for d in DAYS})
    split = load_split(tmp_path, "home", DAYS[-1], CFG)
    # grades beyond LightGBM's label_gain: LambdaRank fails inside LightGBM, the heads do not care
    split.train["grade"] = np.where(split.train["grade"] > 0, 9, 0)
    trained = train_rankers(split, CFG, SHIPPED)
    assert set(trained.rankers) == {VALUE_MODEL} and "LightGBMError" in trained.failures[LAMBDARANK]
    assert choose_challenger(trained.rankers, split.valid)[0] == VALUE_MODEL


def test_a_surface_without_data_is_refused_with_a_clear_message(tmp_path):
    write_days(tmp_path, {d: [examples(d, "home", SHIPPED, positives={"click": 1.0})] for d in DAYS})
    assert load_split(tmp_path, "home", DAYS[-1], CFG).train[c.SURFACE].eq("home").all()
    with pytest.raises(NotEnoughData, match=r"explore: no explore impressions on any of these days: "
                                           r"train \(2019-11-09\): the training set is empty \(0 requests"):
        load_split(tmp_path, "explore", DAYS[-1], CFG)


def test_too_little_data_says_what_was_found_and_what_is_needed(tmp_path):
    write_days(tmp_path, {d: [examples(d, "home", SHIPPED, positives={"click": 1.0}),
                              examples(d, "explore", SHIPPED, n_requests=4, positives={"click": 1.0})]
                          for d in DAYS})
    with pytest.raises(NotEnoughData) as err:
        load_split(tmp_path, "explore", DAYS[-1], CFG)
    message = str(err.value)
    assert message.startswith("explore: too little data: ")
    for name, day in zip(("train", "valid", "test"), DAYS):
        assert f"{name} ({day}): too few requests with a positive (4 requests, " in message
    assert "needs at least 2 requests and 5 with a positive ([data] min_positive_requests)" in message


def test_a_vocabulary_head_with_the_wrong_sign_is_a_config_error():
    cfg = CFG.model_copy(update={"value_weights": {**CFG.value_weights, "negative": 3.0}})
    with pytest.raises(ValueError, match=r"\['negative'\]: a negative head"):
        value_heads(load_vocabulary(), cfg)


def gate(challenger, chronological=0.30, popularity=0.25, champion_version=None, champion=None, margin=0.01):
    return decide(metric="ndcg10_realised", test_day="2019-11-11", challenger_version="2",
                  challenger_metric=challenger, champion_version=champion_version, champion_metric=champion,
                  baseline_metrics={"chronological": chronological, "popularity": popularity, "random": 0.2},
                  baseline_margin=margin, min_improvement=0.0)


def test_a_challenger_worse_than_chronological_is_refused_even_without_a_champion():
    d = gate(0.259, chronological=0.292)
    assert not d.promoted
    assert "does not beat chronological" in d.reason
    assert "chronological 0.29200" in d.reason and "popularity 0.25000" in d.reason
    assert d.to_dict()["chronological_metric"] == 0.292 and d.to_dict()["popularity_metric"] == 0.25


def test_a_challenger_beating_both_baselines_with_no_champion_is_promoted():
    d = gate(0.35)
    assert d.promoted and "no champion yet" in d.reason
    assert "chronological 0.30000" in d.reason and "popularity 0.25000" in d.reason


@pytest.mark.parametrize(("challenger", "promoted"), [(0.3101, True), (0.3099, False), (0.31, False)])
def test_the_baseline_margin_is_respected(challenger, promoted):
    d = gate(challenger, chronological=0.30, popularity=0.10, margin=0.01)
    assert d.promoted is promoted, d.reason


def test_popularity_counts_as_much_as_chronological():
    d = gate(0.35, chronological=0.20, popularity=0.345)
    assert not d.promoted and "does not beat popularity" in d.reason


@pytest.mark.parametrize(
    ("challenger", "champion_version", "champion", "promoted"),
    [
        (0.40, "1", 0.39, True),
        (0.40, "1", 0.40, False),
        (0.38, "1", 0.40, False),
        (float("nan"), None, None, False),
        (float("nan"), "1", 0.5, False),
        (0.40, "1", float("nan"), True),  # a champion that cannot be scored: the baselines decide
        (0.20, "1", 0.10, False),  # beats the champion, not the baselines
    ],
)
def test_the_champion_is_beaten_as_well_as_the_baselines(challenger, champion_version, champion, promoted):
    d = gate(challenger, champion_version=champion_version, champion=champion)
    assert d.promoted is promoted and d.reason


def test_an_uncomputable_baseline_is_never_a_pass():
    assert not gate(0.5, chronological=float("nan")).promoted
