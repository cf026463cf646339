"""Live mode's A/B figures, recomputed plainly: each arm's per-session mean with its interval
clustered by viewer, the treatment's difference and lift with theirs, the sample ratio check, and
the report that groups sessions by the arm the service said."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data.world.ab_stats import Z95, compare, per_session, sample_ratio_p
from data.world.live_report import LiveReport


def plain_ratio(values: list[float], viewers: list[int]) -> tuple[float, float]:
    """The delta-method variance of Σ Y_v / Σ N_v written out viewer by viewer (module docstring)."""
    ids = sorted(set(viewers))
    y = np.array([sum(x for x, v in zip(values, viewers, strict=True) if v == w) for w in ids])
    n = np.array([sum(1 for v in viewers if v == w) for w in ids], float)
    r = y.sum() / n.sum()
    k = len(ids)
    s_yy = ((y - y.mean()) ** 2).sum() / (k - 1)
    s_nn = ((n - n.mean()) ** 2).sum() / (k - 1)
    s_yn = ((y - y.mean()) * (n - n.mean())).sum() / (k - 1)
    return r, (s_yy - 2 * r * s_yn + r * r * s_nn) / (k * n.mean() ** 2)


def test_one_session_per_viewer_is_the_plain_mean_and_its_standard_error():
    rng = np.random.default_rng(1)
    x = rng.poisson(3.0, 500).astype(float)
    m = per_session(x, np.arange(500))
    assert m.mean == pytest.approx(x.mean())
    assert m.ci95 == pytest.approx(Z95 * x.std(ddof=1) / math.sqrt(500))
    assert (m.viewers, m.sessions) == (500, 500)


def test_sessions_are_clustered_by_viewer():
    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    viewers = [7, 7, 8, 9, 9, 9, 10, 11, 11, 12, 12]
    m = per_session(np.array(values, float), np.array(viewers))
    r, var = plain_ratio(values, viewers)
    assert m.mean == pytest.approx(sum(values) / len(values)) == pytest.approx(r)
    assert m.var == pytest.approx(var) and (m.viewers, m.sessions) == (6, 11)
    assert math.isnan(per_session(np.array([2.0, 3.0]), np.array([4, 4])).ci95)  # one viewer: no interval


def test_difference_and_lift_between_the_arms():
    rng = np.random.default_rng(2)
    t_values, t_viewers = rng.poisson(2.2, 300).astype(float), rng.integers(0, 120, 300)
    c_values, c_viewers = rng.poisson(2.0, 280).astype(float), rng.integers(1000, 1120, 280)
    t, c = per_session(t_values, t_viewers), per_session(c_values, c_viewers)
    (rt, vt), (rc, vc) = plain_ratio(list(t_values), list(t_viewers)), plain_ratio(list(c_values), list(c_viewers))
    vs = compare(t, c)
    assert vs.diff == pytest.approx(rt - rc) and vs.diff_ci95 == pytest.approx(Z95 * math.sqrt(vt + vc))
    half = Z95 * math.sqrt(vt / rc**2 + rt**2 * vc / rc**4)
    assert vs.lift == pytest.approx(rt / rc - 1)
    assert (vs.lift_low, vs.lift_high) == (pytest.approx(rt / rc - 1 - half), pytest.approx(rt / rc - 1 + half))


def test_the_interval_of_the_lift_covers_no_difference_about_95_times_in_100():
    """A/A tests of viewers with several correlated sessions each: the clustered interval holds its
    level (a per-session one, blind to the viewers, would be too narrow here)."""
    rng = np.random.default_rng(3)
    covered = 0
    runs = 400
    for _ in range(runs):
        arms = []
        for _arm in range(2):
            taste = rng.gamma(2.0, 1.0, 150)  # a viewer's own rate: their sessions move together
            sessions = rng.integers(1, 6, 150)
            viewers = np.repeat(np.arange(150), sessions)
            arms.append(per_session(rng.poisson(taste[viewers]).astype(float), viewers))
        vs = compare(*arms)
        covered += vs.lift_low <= 0 <= vs.lift_high
    assert 0.92 <= covered / runs <= 0.98


def test_sample_ratio():
    assert sample_ratio_p(500, 500, 0.5) == pytest.approx(1.0)
    assert sample_ratio_p(100, 900, 0.1) == pytest.approx(1.0)
    assert sample_ratio_p(600, 400, 0.5) < 1e-9  # a broken split
    assert math.isnan(sample_ratio_p(0, 0, 0.5))


def page(arm: str, model: str, degraded: tuple[str, ...] = ()) -> dict:
    return {"arm": arm, "experiment": "home-v2", "model_version": model, "degraded": list(degraded)}


def test_the_report_groups_sessions_by_the_arm_the_service_said():
    report = LiveReport()
    sessions = [(1, page("control", "feed_ranker:1"), 3, 1.0), (2, page("treatment", "feed_ranker:2"), 5, 2.0),
                (1, page("control", "feed_ranker:1"), 1, 0.5), (3, page("treatment", "feed_ranker:1", ("experiment",)),
                                                                   0, 0.1),
                (4, page("control", "heuristic"), 2, 0.7), (5, page("treatment", "feed_ranker:2"), 4, 1.5)]
    for viewer, p, engagements, value in sessions:
        report.session(viewer, p, engagements, value)
    s = report.summary(treatment_share=0.5)
    assert s["experiment"] == "home-v2" and set(s["arms"]) == {"control", "treatment"}
    control, treatment = s["arms"]["control"], s["arms"]["treatment"]
    assert (control["sessions"], control["viewers"], treatment["sessions"], treatment["viewers"]) == (3, 2, 3, 3)
    assert control["served_by"] == {"feed_ranker:1": 2, "heuristic": 1}
    assert treatment["served_by"] == {"feed_ranker:2": 2, "feed_ranker:1": 1}
    assert (control["fell_back_to_control"], treatment["fell_back_to_control"]) == (0, 1)
    t = per_session(np.array([5.0, 0, 4]), np.array([2, 3, 5]))
    c = per_session(np.array([3.0, 1, 2]), np.array([1, 1, 4]))
    assert treatment["engagements_per_session"] == round(t.mean, 4) == 3.0
    assert treatment["engagements_per_session_ci95"] == round(t.ci95, 4)
    assert control["engagements_per_session"] == 2.0 and control["engagements_per_session_ci95"] == round(c.ci95, 4)
    vs = s["treatment_vs_control"]["engagements_per_session"]
    assert vs["lift_pct"] == 50.0 and vs["diff"] == 1.0
    assert vs["lift_pct_ci95"] == [round(100 * compare(t, c).lift_low, 2), round(100 * compare(t, c).lift_high, 2)]
    assert s["sample_ratio_p"] == round(sample_ratio_p(3, 2, 0.5), 6)
    assert s["engagements_per_session"] == round(15 / 6, 4)  # the total, as before


def test_without_an_experiment_there_is_one_arm_and_no_lift():
    report = LiveReport()
    for viewer in range(4):
        report.session(viewer, {"arm": "control", "experiment": None, "model_version": "m:1", "degraded": []}, 2, 1.0)
    s = report.summary(treatment_share=None)
    assert s["experiment"] is None and list(s["arms"]) == ["control"] and "treatment_vs_control" not in s
    assert "sample_ratio_p" not in s


def test_plays_pooled_are_one_report_with_the_viewer_the_unit_across_them():
    """Two days' plays, logged as session records and pooled, say what one play of all their
    sessions says: a viewer of both days is one unit of the intervals, not two."""
    one, first, second = LiveReport(), LiveReport(), LiveReport()
    rng = np.random.default_rng(5)
    for k in range(40):
        viewer = int(rng.integers(0, 12))
        arm = "treatment" if viewer % 2 else "control"
        args = (viewer, page(arm, "feed_ranker:2" if arm == "treatment" else "feed_ranker:1"),
                int(rng.integers(0, 6)), float(rng.random()), int(rng.integers(0, 3)), int(rng.integers(1, 4)),
                int(rng.integers(1, 3)))
        one.session(*args)
        (first if k < 20 else second).session(*args)
    pooled = LiveReport.pooled([first.sessions_record(), second.sessions_record()])
    together, apart = one.summary(0.5), pooled.summary(0.5)
    for key in ("arms", "treatment_vs_control", "sample_ratio_p", "engagements_per_session",
                "engagements_per_session_ci95", "negatives_per_session_ci95", "truth_value_per_session_ci95",
                "experiment"):
        assert apart[key] == together[key], key
    assert apart["sessions"] == 40
    assert pooled.summary(0.5)["arms"]["treatment"]["served_by"] == {"feed_ranker:2": one.arms.count("treatment")}


def test_negative_actions_per_session_are_a_metric_of_each_arm_and_an_older_play_has_none():
    report = LiveReport()
    for viewer, arm, negatives in [(1, "control", 2), (2, "control", 0), (3, "treatment", 1), (4, "treatment", 0)]:
        report.session(viewer, page(arm, "feed_ranker:1"), 3, 1.0, negatives)
    s = report.summary(0.5)
    assert s["negatives_per_session"] == 0.75
    arms = s["arms"]
    assert (arms["control"]["negatives_per_session"], arms["treatment"]["negatives_per_session"]) == (1.0, 0.5)
    assert s["treatment_vs_control"]["negatives_per_session"]["lift_pct"] == -50.0
    older = report.sessions_record()
    del older["negatives"]  # a play recorded before the column existed
    pooled = LiveReport.pooled([older]).summary(0.5)
    assert math.isnan(pooled["negatives_per_session"]) and pooled["engagements_per_session"] == 3.0
