"""training.skew on hand-built rows: how a served vector is matched with training retrieval's
columns, per feature, with the tolerance and the failing rule of training/skew.toml."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.skew import DEFAULT_PATH, SkewConfig, SkewReport, compare

NAMES = ["post__likes", "request_features__post_age_hours_at_request", "viewer__requests_7d"]


def served(vectors: list[list[float | None]], label: str = "feed_ranker:3") -> pd.DataFrame:
    n = len(vectors)
    return pd.DataFrame({"request_id": [f"r{i // 2}" for i in range(n)], "viewer_id": range(n),
                         "post_id": range(100, 100 + n), "model_version": [label] * n, "features": vectors})


def names_of(label: str):
    return {"feed_ranker:3": NAMES}.get(label)


def run(vectors, training: dict, cfg: SkewConfig | None = None, label="feed_ranker:3") -> SkewReport:
    cfg = cfg or SkewConfig(max_mismatch_rate=0.3)
    report = SkewReport("d", cfg.max_mismatch_rate)
    return compare(served(vectors, label), pd.DataFrame(training), names_of, cfg, report)


def test_equal_vectors_pass_and_missing_on_both_sides_is_a_match():
    report = run([[3.0, 27.5, None], [0.0, 1.25, 4.0]],
                 {"post__likes": [3.0, 0.0], "request_features__post_age_hours_at_request": [27.5, 1.25],
                  "viewer__requests_7d": [np.nan, 4.0]})
    assert report.passed and report.rows == 2 and report.requests == 1
    assert report.mismatch_rates == dict.fromkeys(sorted(NAMES), 0.0)


def test_the_zero_age_bug_fails_with_the_worst_rows_named():
    ages = [27.5, 3.0, 0.1, 50.0]
    report = run([[1.0, a, 2.0] for a in ages],
                 {"post__likes": [1.0] * 4, "request_features__post_age_hours_at_request": [0.0] * 4,
                  "viewer__requests_7d": [2.0] * 4})
    assert not report.passed
    assert report.failing == ["request_features__post_age_hours_at_request"]
    age = report.features["request_features__post_age_hours_at_request"]
    assert age.rate == 1.0 and age.mismatches == 4
    assert [w["served"] for w in age.worst] == pytest.approx([50.0, 27.5, 3.0])  # largest gaps first
    assert all(w["training"] == 0.0 for w in age.worst)
    assert "over" in report.summary() and "post_age" in report.summary()


def test_tolerances_absolute_per_feature_and_relative():
    cfg = SkewConfig(max_mismatch_rate=0.0, rtol=1e-5, atol=1e-6,
                     feature_atol={"request_features__post_age_hours_at_request": 0.0003})
    # 0.8 s of request-time rounding on the age passes; a relative 1e-6 on a count passes
    report = run([[100000.0, 10.0 + 0.8 / 3600, 1.0]],
                 {"post__likes": [100000.1], "request_features__post_age_hours_at_request": [10.0],
                  "viewer__requests_7d": [1.0]}, cfg)
    assert report.passed, report.mismatch_rates
    report = run([[1.0, 10.0 + 2 / 3600, 1.0]],
                 {"post__likes": [1.0], "request_features__post_age_hours_at_request": [10.0],
                  "viewer__requests_7d": [1.0 + 1e-4]}, cfg)
    assert report.failing == ["request_features__post_age_hours_at_request", "viewer__requests_7d"]


def test_one_side_missing_is_a_mismatch_and_a_feature_training_lacks_fails():
    report = run([[1.0, 5.0, None], [1.0, 5.0, None]],
                 {"post__likes": [np.nan, 1.0], "request_features__post_age_hours_at_request": [5.0, 5.0]})
    assert report.features["post__likes"].rate == 0.5
    worst = report.features["post__likes"].worst[0]
    assert worst["training"] is None and worst["served"] == 1.0
    # not returned by training retrieval at all: served None vs missing is a match, a value is not
    assert report.features["viewer__requests_7d"].rate == 0.0
    report = run([[1.0, 5.0, 2.0]], {"post__likes": [1.0], "request_features__post_age_hours_at_request": [5.0]})
    assert report.failing == ["viewer__requests_7d"]


def test_the_threshold_is_a_rate_per_feature():
    vectors = [[float(i), 1.0, 1.0] for i in range(10)]
    training = {"post__likes": [float(i) for i in range(9)] + [99.0],
                "request_features__post_age_hours_at_request": [1.0] * 10, "viewer__requests_7d": [1.0] * 10}
    assert run(vectors, training, SkewConfig(max_mismatch_rate=0.1)).passed  # 1 in 10 is not over 10 %
    assert not run(vectors, training, SkewConfig(max_mismatch_rate=0.05)).passed


def test_unknown_model_versions_are_skipped_with_a_reason():
    report = run([[1.0, 2.0, 3.0]], {"post__likes": [1.0]}, label="feed_ranker:99")
    assert report.rows == 0 and report.passed
    assert report.skipped == {"model version unknown to the registry": 1}
    assert "nothing to compare" in report.summary()


def test_a_vector_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="2 values, its model 3"):
        run([[1.0, 2.0]], {"post__likes": [1.0]})


def test_the_shipped_config_parses_and_bad_values_are_refused(tmp_path):
    cfg = SkewConfig.load(DEFAULT_PATH)
    assert 0 < cfg.max_mismatch_rate < 1
    assert math.isclose(cfg.feature_atol["request_features__post_age_hours_at_request"], 0.0003)
    bad = tmp_path / "skew.toml"
    bad.write_text("max_mismatch_rate = 2.0\n")
    with pytest.raises(ValueError, match="max_mismatch_rate"):
        SkewConfig.load(bad)
    bad.write_text("tolerance = 0.1\n")
    with pytest.raises(ValueError, match=r"unknown keys \['tolerance'\]"):
        SkewConfig.load(bad)


def test_a_value_the_stream_held_shortly_before_the_request_is_delayed_not_a_mismatch():
    """A real-time value the service read before the stream caught up equals one the feature had
    within the stream's delay before the request (`earlier`): counted as delayed. A value it never
    had there (a definition that differs) is still a mismatch, and so is one with no earlier values."""
    names = {"feed_ranker:3": ["post_realtime__post_rt_like_5m"]}.get
    vectors = [[3.0], [5.0], [None], [7.0]]
    training = pd.DataFrame({"post_realtime__post_rt_like_5m": [4.0, 6.0, 1.0, 8.0]})
    earlier = pd.DataFrame({"row": [0, 0, 1, 2, 3], "feature": ["post_realtime__post_rt_like_5m"] * 5,
                            "value": [2.0, 3.0, 4.0, np.nan, 8.0]})
    cfg = SkewConfig(max_mismatch_rate=0.3)
    report = compare(served(vectors), training, names, cfg, SkewReport("d", 0.3, 5.0), earlier)
    likes = report.features["post_realtime__post_rt_like_5m"]
    # row 0: 3 was held before 4; row 2: nothing yet then; row 1: 5 never held; row 3: 7 never held
    assert (likes.rows, likes.delayed, likes.mismatches) == (4, 2, 2)
    assert sorted(w["served"] for w in likes.worst) == [5.0, 7.0]
    assert report.delayed_rates == {"post_realtime__post_rt_like_5m": 0.5}
    assert "2 real-time value(s) matched training's up to 5 s before" in report.summary()
    # without earlier values, every row differs from training's value at its request
    alone = compare(served(vectors), training, names, cfg, SkewReport("d", 0.3))
    assert alone.features["post_realtime__post_rt_like_5m"].mismatches == 4
