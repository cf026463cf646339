"""A live A/B through the real HTTP app, on a real MLflow registry: Home's champion (feed_ranker:1)
against its challenger (feed_ranker:2) on half the viewers.

Checked: every response says the experiment and the viewer's arm, the arm the documented hash
gives, on every request and endpoint; each arm's pages are ordered by its own model; the served
impressions carry the arm; a treatment whose model cannot be served (no such version or alias, a
load that fails) serves the control's model and says why, never an empty or failed page; a
treatment configured as the heuristic is declared, not degraded.
"""

from __future__ import annotations

import json

import pytest
import redis

from data import columns as c
from serving.arm_models import treatment_targets
from serving.experiment import CONTROL, TREATMENT
from serving.impression_log import ImpressionLogWriter
from serving.pipeline import drain_side_effects
from tests.serving.helpers import (
    build_app,
    explore_sets,
    model_store,
    random_ranker,
    register_challenger,
    register_champion,
    serving_config,
    social_world,
    write_world,
)
from tests.serving.test_experiment import documented_arm
from tests.serving.test_registry_faults import NAMES, NOW, GivenFeatures

VIEWERS = range(1, 13)  # the social world's users
EVERY_POST = list(range(1000, 1072))  # ... and their posts
SALT = "arms-test"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """feed_ranker:1 the champion, feed_ranker:2 the challenger; explore_ranker:1 both."""
    root = tmp_path_factory.mktemp("registry")
    uri, artifacts = f"sqlite:///{root / 'mlflow.db'}", root / "mlartifacts"
    assert register_champion(uri, artifacts, "home", "feed_ranker", random_ranker(NAMES, seed=4)) == "1"
    assert register_challenger(uri, artifacts, "home", "feed_ranker", random_ranker(NAMES, seed=9)) == "2"
    assert register_champion(uri, artifacts, "explore", "explore_ranker", random_ranker(NAMES, seed=5)) == "1"
    return uri, artifacts


@pytest.fixture
def world(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config(model={"engine": "lightgbm"}, impressions={"record_seen": False})
    rows = social_world()
    write_world(client, cfg, rows)
    explore_sets(client, cfg, [(r[2], r[3]) for r in rows if r[1] == "post"])
    yield client, cfg
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


def ab_app(registry, world, tmp_path, treatment: dict, faults: dict | None = None, impressions=None):
    """The app with the A/B on: `treatment` is [experiment.treatment]; `faults` break the treatment's
    registry (tests.serving.helpers.model_store)."""
    uri, artifacts = registry
    client, cfg = world
    cfg = cfg.with_("experiment", enabled=True, name="home-v2", salt=SALT, treatment_share=0.5, treatment=treatment)
    control = model_store(uri, artifacts, cfg, tmp_path / "compiled")
    targets = treatment_targets(cfg)
    arm_store = model_store(uri, artifacts, cfg, tmp_path / "compiled", faults, targets=targets,
                            role=TREATMENT) if targets else None
    return build_app(client, cfg, control, hydrator=GivenFeatures(), impressions=impressions, now_ms=NOW,
                     treatment_models=arm_store)


def pages(http, surface: str) -> dict[int, dict]:
    out = {}
    for viewer in VIEWERS:
        r = http.post(f"/v1/feed/{surface}", json={"viewer_id": viewer, "limit": 5})
        assert r.status_code == 200, r.text
        out[viewer] = r.json()
        assert out[viewer]["items"], out[viewer]  # a page, whatever the arm
    return out


def test_each_arm_is_served_by_its_own_model_and_the_arm_goes_with_every_impression(registry, world, http_for,
                                                                                   tmp_path):
    writer = ImpressionLogWriter(tmp_path / "landing", "ab", flush_interval_s=0.05)
    app = ab_app(registry, world, tmp_path, {"home_model": "@challenger"}, impressions=writer)
    http = http_for(app)
    home, explore = pages(http, "home"), pages(http, "explore")
    arms = {v: documented_arm(SALT, v, 0.5) for v in VIEWERS}
    assert set(arms.values()) == {CONTROL, TREATMENT}  # this salt splits these twelve viewers

    for viewer, arm in arms.items():
        for page in (home[viewer], explore[viewer]):  # one arm per viewer, on every surface
            assert (page["experiment"], page["arm"]) == ("home-v2", arm), page
            assert "experiment" not in page["degraded"] and "registry" not in page["degraded"], page
        assert home[viewer]["model_version"] == ("feed_ranker:2" if arm == TREATMENT else "feed_ranker:1")
        assert explore[viewer]["model_version"] == "explore_ranker:1"  # the treatment leaves Explore as it is
        again = http.post("/v1/feed/home", json={"viewer_id": viewer, "limit": 5}).json()
        ranked = http.post("/v1/rank", json={"viewer_id": viewer, "surface": "home", "post_ids": EVERY_POST}).json()
        assert again["arm"] == ranked["arm"] == arm and ranked["model_version"] == home[viewer]["model_version"]

    assert drain_side_effects(timeout_s=60) and writer.flush(60)
    writer.close()
    lines = [json.loads(line) for path in (tmp_path / "landing" / "impressions").rglob("*.jsonl")
             for line in path.read_text().splitlines()]
    served = {p["request_id"]: p for p in (*home.values(), *explore.values())}
    logged = [x for x in lines if x[c.REQUEST_ID] in served]
    assert {x[c.REQUEST_ID] for x in logged} == set(served)
    for x in logged:
        page = served[x[c.REQUEST_ID]]
        assert (x[c.EXPERIMENT], x[c.ARM], x[c.MODEL_VERSION]) == ("home-v2", page["arm"], page["model_version"])


@pytest.mark.parametrize("treatment, faults, why", [
    ({"home_model": ":99", "explore_model": "@no-such-alias"}, None,
     "the registry has no such model, alias or version"),
    ({"home_model": "@challenger", "explore_model": "@challenger"}, {"load": OSError("artifact store gone")},
     "failed to load (OSError)"),
])
def test_a_treatment_model_that_cannot_be_served_serves_the_controls_and_says_why(registry, world, http_for,
                                                                                 tmp_path, treatment, faults, why):
    app = ab_app(registry, world, tmp_path, treatment, faults)
    http = http_for(app)
    assert http.get("/readyz").status_code == 200  # a missing treatment is a settled state, not a hung start
    for surface, control_model in (("home", "feed_ranker:1"), ("explore", "explore_ranker:1")):
        for page in pages(http, surface).values():
            assert page["model_version"] == control_model, page  # never empty, never failed: the control's
            if page["arm"] == CONTROL:
                assert "experiment" not in page["degraded"], page
                continue
            reason = page["degraded_reasons"]["experiment"]
            assert why in reason and f"serving the control's {control_model}" in reason, reason
            assert str(treatment_targets(app.config)[surface]) in reason, reason  # what was asked


def test_a_treatment_serving_the_heuristic_is_declared_not_degraded(registry, world, http_for, tmp_path):
    http = http_for(ab_app(registry, world, tmp_path, {"home_model": "heuristic"}))
    for page in pages(http, "home").values():
        if page["arm"] == TREATMENT:
            assert (page["model_version"], page["heuristic_reason"]) == ("heuristic", "experiment_arm"), page
            assert page["degraded"] == [], page
        else:
            assert page["model_version"] == "feed_ranker:1", page
