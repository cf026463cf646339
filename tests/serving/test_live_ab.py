"""Live mode's A/B against the real HTTP app: the service routes the simulated viewers to the champion
(control) or the heuristic (treatment); the player records the arm each response says, never its
own; the report measures each arm, and MLflow gets each arm's figures, the lift and the experiment."""

from __future__ import annotations

from functools import partial

import mlflow
import numpy as np
import pytest
import redis
from mlflow import MlflowClient

from data.redis_server import EmbeddedRedis
from data.settings import Settings
from data.stream.valkey_stream import ValkeyStream
from data.vocabulary import load_vocabulary
from data.world.live import LiveConfig, LivePlayer
from data.world.live_report import LiveReport
from pipelines.live import format_live, log_to_mlflow
from serving.config import EventsConfig
from serving.event_intake import EventIntake
from serving.experiment import CONTROL, TREATMENT
from tests.serving.helpers import (
    build_app,
    explore_sets,
    model_store,
    random_ranker,
    register_champion,
    serving_config,
    social_world,
    write_world,
)
from tests.serving.test_experiment import documented_arm
from tests.serving.test_live_mode import SteppedClock, truth_of
from tests.serving.test_registry_faults import NAMES, NOW, GivenFeatures

pytestmark = pytest.mark.integration

SALT = "live-ab-test"


@pytest.fixture
def live_ab(redis_server, tmp_path, http_for):
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config(model={"engine": "lightgbm"}, home={"out_of_network_share": 0.3})
    cfg = cfg.with_("experiment", enabled=True, name="live-heuristic", salt=SALT, treatment_share=0.5,
                    treatment={"home_model": "heuristic", "explore_model": "heuristic"})
    rows = social_world()
    write_world(client, cfg, rows)
    explore_sets(client, cfg, [(r[2], r[3]) for r in rows if r[1] == "post"])
    uri, artifacts = f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "mlartifacts"
    register_champion(uri, artifacts, "home", "feed_ranker", random_ranker(NAMES, seed=4))
    register_champion(uri, artifacts, "explore", "explore_ranker", random_ranker(NAMES, seed=5))
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        app = build_app(client, cfg, model_store(uri, artifacts, cfg, tmp_path / "compiled"), hydrator=GivenFeatures(),
                        now_ms=NOW)
        connect = partial(ValkeyStream.connect, server.url, 2, timeout_s=5.0)
        app.intake = EventIntake(connect, load_vocabulary(), app.clock, EventsConfig())
        yield cfg, rows, http_for(app), connect()
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


def test_each_arm_is_measured_as_the_service_assigned_it_and_logged_to_mlflow(live_ab, tmp_path):
    cfg, rows, http, stream = live_ab
    clock = SteppedClock(NOW)
    config = LiveConfig(sessions_per_step=8, posts_per_step=2.0, seed=5)
    player = LivePlayer(truth_of(rows), http, stream, clock, config, viewers=np.arange(1, 13))

    report = player.run(NOW + 5 * config.step_ms, wait=clock.wait)

    assert report.sessions == 40 and report.failed_requests == 0
    # the arm of every session is the service's hash of the viewer (the player only read it)
    assert report.arms == [documented_arm(SALT, v, 0.5) for v in report.viewers]
    summary = report.summary(treatment_share=0.5)
    arms = summary["arms"]
    assert summary["experiment"] == "live-heuristic" and set(arms) == {CONTROL, TREATMENT}
    assert arms[CONTROL]["sessions"] + arms[TREATMENT]["sessions"] == 40
    assert set(arms[TREATMENT]["served_by"]) == {"heuristic"}  # the treatment as configured
    assert "feed_ranker:1" in arms[CONTROL]["served_by"]  # (and "heuristic" for a page left empty)
    vs = summary["treatment_vs_control"]["engagements_per_session"]
    low, high = vs["lift_pct_ci95"]
    assert low <= vs["lift_pct"] <= high and 0 <= summary["sample_ratio_p"] <= 1
    assert "lift" in format_live(summary, clock.now_ms())

    settings = Settings(home=tmp_path / "loupe", world="tiny")
    log_to_mlflow(settings, summary, report.sessions_record(), hours=5 * config.step_ms / 3_600_000, speed=1.0,
                  serving=cfg)
    client = MlflowClient(settings.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("live").experiment_id])
    # the sessions, for an A/B over several plays to be pooled, read back as the same figures
    sessions = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/live_sessions.json")
    assert LiveReport.pooled([sessions]).summary(0.5)["arms"] == arms
    metrics, params = run.data.metrics, run.data.params
    for arm in (CONTROL, TREATMENT):
        assert metrics[f"{arm}_engagements_per_session"] == arms[arm]["engagements_per_session"]
        assert metrics[f"{arm}_engagements_per_session_ci95"] == arms[arm]["engagements_per_session_ci95"]
        assert metrics[f"{arm}_sessions"] == arms[arm]["sessions"]
    assert metrics["lift_engagements_per_session_pct"] == vs["lift_pct"]
    assert (metrics["lift_engagements_per_session_pct_ci95_low"],
            metrics["lift_engagements_per_session_pct_ci95_high"]) == (low, high)
    assert "lift_truth_value_per_session_pct" in metrics and "sample_ratio_p" in metrics
    assert params["experiment"] == "live-heuristic" and params["experiment_salt"] == SALT
    assert params["treatment_home_model"] == "heuristic" and params["control_home_model"] == "feed_ranker@champion"
    assert float(params["treatment_share"]) == 0.5
