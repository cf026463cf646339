"""The one celebrity rule (features.celebrity): the threshold from a histogram equals numpy's
percentile of the expanded counts, the floor and the fixed threshold hold, and candidate generation
takes the rule from the features' config (the old per-feed settings are refused, naming the new home)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from candidate_gen.config import CandidateConfig
from features.celebrity import DEFAULT_PATH, CelebrityRule


def numpy_rule(counts: np.ndarray, percentile: float, floor: int) -> int:
    positive = counts[counts > 0]
    derived = math.ceil(np.percentile(positive, percentile)) if len(positive) else 0
    return max(derived, floor)


@pytest.mark.parametrize("seed", range(12))
def test_histogram_percentile_equals_numpy_on_the_expanded_counts(seed):
    rng = np.random.default_rng(seed)
    counts = np.floor(rng.pareto(1.2, size=int(rng.integers(1, 5000))) * 20).astype(np.int64)
    percentile = float(rng.choice([50.0, 90.0, 97.5, 99.0, 99.9, 100.0, 0.0]))
    rule = CelebrityRule(percentile=percentile, min_followers=1)
    assert rule.threshold(counts) == numpy_rule(counts, percentile, 1)
    values, accounts = np.unique(counts, return_counts=True)  # zeros included: they do not count
    shuffled = rng.permutation(len(values))
    assert rule.threshold_from_histogram(values[shuffled], accounts[shuffled]) == rule.threshold(counts)


def test_floor_fixed_threshold_and_no_followers_at_all():
    counts = np.array([0, 1, 2, 3, 500, 900])
    assert CelebrityRule(percentile=99.0, min_followers=100).threshold(counts) == 884  # ceil(883.6)
    assert CelebrityRule(percentile=50.0, min_followers=100).threshold(counts) == 100  # floored
    assert CelebrityRule(followers=7).threshold(counts) == 7
    assert CelebrityRule(min_followers=100).threshold(np.zeros(10, dtype=int)) == 100
    assert CelebrityRule(min_followers=100).threshold_from_histogram([], []) == 100


def test_config_is_parsed_once_and_checked(tmp_path):
    rule = CelebrityRule.load(DEFAULT_PATH)
    assert rule.followers is None and rule.percentile == 99.0 and rule.min_followers == 100
    assert CelebrityRule.from_section({"followers": 40}).followers == 40
    with pytest.raises(ValueError, match="unknown"):
        CelebrityRule.from_section({"share": 0.01})
    with pytest.raises(ValueError, match="percentile"):
        CelebrityRule(percentile=120.0)


def test_candidate_generation_uses_the_features_rule_and_refuses_its_old_settings():
    assert CandidateConfig.load().celebrity == CelebrityRule.load()
    with pytest.raises(ValueError, match=r"features/config\.toml"):
        CandidateConfig.from_dict({"feed": {"celebrity_percentile": 95.0}})
    assert CandidateConfig.load().with_celebrity(followers=3).celebrity.followers == 3
