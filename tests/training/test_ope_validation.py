"""OPE against the simulator's truth on a real tiny world: exploring logs with exact propensities,
the champion-like ranker's lift over chronological order estimated off-policy vs the simulated A/B
and vs the truth's own lift, the same on "service" logs, and the MLflow record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data import columns as c
from data.world import TruthModel, generate_world
from training.ab_test import simulate
from training.ope_validation import chronological_scores, exploring_log, logged_lift, simulated_lift, truth_lift

SLOTS = 10


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """The last full day's Home sessions of a tiny world (clean, from the truth), a ranker that
    knows the truth up to noise, and the truth model."""
    root = tmp_path_factory.mktemp("world")
    summary = generate_world(size="tiny", landing_dir=root / "landing", truth_dir=root / "truth")
    truth = TruthModel.load(root / "truth")
    day = summary.days[-2]
    imp = pd.read_parquet(root / "truth" / "impressions" / f"{day}.parquet",
                          columns=[c.REQUEST_ID, c.VIEWER_ID, c.POST_ID, c.SURFACE, c.TS])
    posts = pd.read_parquet(root / "truth" / "posts.parquet", columns=[c.POST_ID, c.CREATED_AT])
    frame = imp[imp[c.SURFACE] == "home"].merge(posts, on=c.POST_ID).reset_index(drop=True)
    frame[c.TS] = pd.to_datetime(frame[c.TS], utc=True)
    frame[c.CREATED_AT] = pd.to_datetime(frame[c.CREATED_AT], utc=True)
    value = truth.expected_value(frame[c.VIEWER_ID].to_numpy(), frame[c.POST_ID].to_numpy(), frame[c.TS])
    scores = value + np.random.default_rng(0).normal(0, value.std(), len(value))
    return frame, scores, truth


def test_the_exploring_log_has_exact_propensities(sessions):
    frame, scores, truth = sessions
    n = frame.groupby(c.REQUEST_ID)[c.POST_ID].transform("size").to_numpy()
    off = exploring_log(frame, scores, truth, slots=SLOTS, share=0.0, seed=1)
    assert (off[c.PROPENSITY] == 1.0).all() and not off["explored"].any()
    full = exploring_log(frame, scores, truth, slots=SLOTS, share=1.0, seed=1)
    np.testing.assert_allclose(full[c.PROPENSITY], 1.0 / n[full["row"]])
    some = exploring_log(frame, scores, truth, slots=SLOTS, share=0.3, seed=1)
    explored_requests = frame[c.REQUEST_ID].iloc[some.loc[some["explored"], "row"]].nunique()
    assert 0.2 < explored_requests / frame[c.REQUEST_ID].nunique() < 0.4
    assert (some[c.POSITION] < SLOTS).all() and some["reward"].ge(0).all() and some["reward"].sum() > 0


def test_ope_of_the_lift_from_a_fully_exploring_log_agrees_with_the_truth_and_the_ab(sessions):
    frame, scores, truth = sessions
    ab = simulate(frame, scores, truth, slots=SLOTS, treatment_share=0.5, seed=11)
    result = simulated_lift(frame, scores, truth, ab, slots=SLOTS, shares=(1.0,), seed=3)
    true_lift = truth_lift(frame, scores, chronological_scores(frame), truth, SLOTS)["lift_pct"]
    assert result["truth_all_sessions"]["lift_pct"] == pytest.approx(true_lift)
    assert true_lift > 0  # a ranker that knows the truth beats chronological order
    block = result["by_share"]["1.0"]
    assert block["explored_requests"] == block["requests"]
    ab_ci = result["ab_test"]["ci95_pct"]
    for name, e in block["estimators"].items():
        assert e["ci95_pct"][0] < true_lift < e["ci95_pct"][1], name
        assert e["inside_ab_ci95"] == (ab_ci[0] <= e["lift_pct"] <= ab_ci[1])


def test_logged_lift_judges_the_served_pages_and_refuses_logs_without_propensities(sessions):
    frame, scores, truth = sessions
    served = exploring_log(frame, scores, truth, slots=SLOTS, share=1.0, seed=5)
    rows = served["row"].to_numpy()
    logs = frame.iloc[rows].reset_index(drop=True).assign(**{
        c.POSITION: served[c.POSITION].to_numpy() + 20,  # a later page: positions are offset
        c.PROPENSITY: served[c.PROPENSITY].to_numpy()})
    result = logged_lift(logs, scores[rows], served["reward"].to_numpy(), seed=2)
    assert result["requests"] == logs[c.REQUEST_ID].nunique()
    for e in result["estimators"].values():
        assert e["ci95_pct"][0] < e["lift_pct"] < e["ci95_pct"][1]
    # reordering the same page: both targets match the log about 1 / page size of the time
    assert 0 < result["matched_slots"]["champion"] < len(logs)
    with pytest.raises(ValueError, match="exploration share"):
        logged_lift(logs.assign(**{c.PROPENSITY: np.nan}), scores[rows], served["reward"].to_numpy())


def test_ope_results_are_logged_to_mlflow(sessions, tmp_path):
    import mlflow

    from training.ope_tracking import EXPERIMENT, log_ope, ope_metrics
    from training.tracking import connect

    frame, scores, truth = sessions
    ab = simulate(frame, scores, truth, slots=SLOTS, treatment_share=0.5, seed=11)
    result = {"surface": "home", "model_name": "feed_ranker", "version": "3", "test_day": "2026-10-03",
              "logged": {"skipped": "no propensities"},
              "simulated": simulated_lift(frame, scores, truth, ab, slots=SLOTS, shares=(1.0,), seed=3)}
    client = connect(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "artifacts"))
    run_id = log_ope(result)
    run = client.get_run(run_id)
    assert run.info.experiment_id == mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    assert run.data.metrics == pytest.approx(ope_metrics(result))
    assert run.data.metrics["sim.share_1.0.dr.lift_pct"] == pytest.approx(
        result["simulated"]["by_share"]["1.0"]["estimators"]["dr"]["lift_pct"])
    assert run.data.tags["model"] == "feed_ranker"
