"""A registry fault is not "no champion", on a real MLflow SQLite registry.

The registry is broken the way a disk or a volume breaks it: its database file turns to garbage
(restored afterwards), or the service is pointed at a file that never was a database. (chmod 000
is no fault for root, who reads any file, so the tests do not rely on permissions.)

Checked: only a missing registered model or alias means "no champion"; a fault keeps the serving
champion and every response says `degraded: registry` with the reason; an alias taken away is no
champion (not degraded) and the champion kept on disk is forgotten; a fresh start with the registry
broken serves the champion it compiled before (from disk, with its version), or the heuristic,
becomes ready and answers /readyz; it never raises (a raising worker is a crash-looping worker).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import redis

from data.settings import Settings
from serving.app import RankingApp, wait_ready
from serving.model_store import NO_CHAMPION, REGISTRY_UNREACHABLE
from tests.candidates.helpers import HOUR, T0
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
from training import tracking

NAMES = [f"f{i}" for i in range(8)]
NOW = T0 + 10 * HOUR
READY_S = 600.0  # a generous deadline for startup on a busy machine (never a timing assertion)


class GivenFeatures:
    """The hydrator of these tests: every candidate gets a feature vector in the champion's columns,
    so a served champion (not the heuristic) orders the page."""

    name = "hydrate"

    def run(self, query, state) -> None:
        state.feature_names = tuple(NAMES)
        state.features = np.random.default_rng(len(state.candidates)).normal(
            size=(len(state.candidates), len(NAMES))).astype(np.float32)

    def fallback(self, query, state) -> None:
        state.features = None


@contextlib.contextmanager
def broken(db: Path):
    """The registry's database file turned to garbage for the block, then put back as it was."""
    good = db.read_bytes()
    db.write_bytes(b"this is no longer a database" * (len(good) // 28 + 1))
    try:
        yield
    finally:
        db.write_bytes(good)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A real registry with a Home champion (feed_ranker:1) and nothing for Explore."""
    root = tmp_path_factory.mktemp("registry")
    db, artifacts = root / "mlflow.db", root / "mlartifacts"
    uri = f"sqlite:///{db}"
    version = register_champion(uri, artifacts, "home", "feed_ranker", random_ranker(NAMES, seed=4))
    assert version == "1"
    return uri, db, artifacts


@pytest.fixture
def world(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config(model={"engine": "lightgbm"}, impressions={"enabled": False, "record_seen": False})
    rows = social_world()
    write_world(client, cfg, rows)
    explore_sets(client, cfg, [(r[2], r[3]) for r in rows if r[1] == "post"])
    yield client, cfg
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


def test_only_a_missing_model_or_alias_is_no_champion(registry):
    uri, db, artifacts = registry
    client = tracking.connect(uri, str(artifacts))
    assert str(tracking.version_by_alias(client, "feed_ranker", tracking.CHAMPION).version) == "1"
    assert tracking.version_by_alias(client, "explore_ranker", tracking.CHAMPION) is None  # no such model
    assert tracking.version_by_alias(client, "feed_ranker", "no-such-alias") is None  # no such alias
    with broken(db), pytest.raises(Exception) as fault:  # whatever the store raises
        tracking.version_by_alias(client, "feed_ranker", tracking.CHAMPION)
    assert "database" in str(fault.value)
    assert str(tracking.version_by_alias(client, "feed_ranker", tracking.CHAMPION).version) == "1"


def test_a_registry_fault_keeps_the_champion_and_every_response_says_so(registry, world, http_for, tmp_path):
    uri, db, artifacts = registry
    client, cfg = world
    store = model_store(uri, artifacts, cfg, tmp_path / "compiled")
    http = http_for(build_app(client, cfg, store, hydrator=GivenFeatures(), now_ms=NOW))
    ok = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 5}).json()
    assert ok["model_version"] == "feed_ranker:1" and "registry" not in ok["degraded"], ok

    with broken(db):
        store.refresh()  # what the poller does every poll_s
        home = http.post("/v1/feed/home", json={"viewer_id": 2, "limit": 5})
        explore = http.post("/v1/feed/explore", json={"viewer_id": 2, "limit": 5})
        ranked = http.post("/v1/rank", json={"viewer_id": 2, "surface": "home", "post_ids": [1000, 1001]})
        assert http.get("/readyz").status_code == 200
    assert home.status_code == explore.status_code == ranked.status_code == 200
    home, explore, ranked = home.json(), explore.json(), ranked.json()
    # the champion keeps serving, and says that the registry behind it is broken
    assert home["model_version"] == "feed_ranker:1" and home["scorer"] == "lightgbm", home
    assert "registry" in home["degraded"] and "feed_ranker:1" in home["degraded_reasons"]["registry"], home
    assert ranked["model_version"] == "feed_ranker:1" and "registry" in ranked["degraded"], ranked
    # Explore had no champion when the registry last answered; now it cannot know: degraded too
    assert explore["model_version"] == "heuristic" and explore["heuristic_reason"] == REGISTRY_UNREACHABLE
    assert "registry" in explore["degraded"], explore
    assert store.status()["home"]["errors"] >= 1

    store.refresh()  # the registry is back
    again = http.post("/v1/feed/home", json={"viewer_id": 3, "limit": 5}).json()
    assert again["model_version"] == "feed_ranker:1" and "registry" not in again["degraded"], again
    explore = http.post("/v1/feed/explore", json={"viewer_id": 3, "limit": 5}).json()
    assert explore["heuristic_reason"] == NO_CHAMPION and "registry" not in explore["degraded"], explore


def test_an_alias_taken_away_is_no_champion_and_forgets_the_champion_on_disk(registry, world, http_for, tmp_path):
    uri, db, artifacts = registry
    client, cfg = world
    compiled = tmp_path / "compiled"
    store = model_store(uri, artifacts, cfg, compiled)
    http = http_for(build_app(client, cfg, store, hydrator=GivenFeatures(), now_ms=NOW))
    manifest = json.loads((compiled / "champion-home.json").read_text())
    assert (manifest["name"], manifest["version"], manifest["feature_names"]) == ("feed_ranker", "1", NAMES)
    assert (compiled / manifest["path"]).is_dir()
    registry_client = tracking.connect(uri, str(artifacts))
    registry_client.delete_registered_model_alias("feed_ranker", tracking.CHAMPION)
    try:
        store.refresh()
        body = http.post("/v1/feed/home", json={"viewer_id": 4, "limit": 5}).json()
        assert body["model_version"] == "heuristic" and body["heuristic_reason"] == NO_CHAMPION, body
        assert "registry" not in body["degraded"], body  # declared, not degraded
        assert not (compiled / "champion-home.json").exists()  # a restart must not bring it back
    finally:
        tracking.promote(registry_client, "feed_ranker", "1")


def test_a_fresh_start_with_the_registry_broken_serves_the_champion_it_compiled(registry, world, redis_server,
                                                                               http_for, tmp_path):
    uri, db, artifacts = registry
    client, cfg = world
    cfg = cfg.with_("model", engine="compiled")
    settings = Settings(home=tmp_path / "loupe", world="tiny", redis_url=redis_server.url, mlflow_tracking_uri=uri)
    first = RankingApp.from_settings(settings, cfg)  # a healthy start: loads, compiles, keeps it on disk
    try:
        assert wait_ready(first, READY_S), first.models.status()
        assert first.models.current("home").label == "feed_ranker:1"
        assert first.models.current("home").engine == "compiled"
    finally:
        first.close()

    with broken(db):
        second = RankingApp.from_settings(settings, cfg)  # the restart: never raises
        try:
            assert wait_ready(second, READY_S), second.models.status()
            http = http_for(second)
            assert http.get("/readyz").status_code == 200 and http.get("/livez").status_code == 200
            home = second.models.current("home")
            assert (home.label, home.engine) == ("feed_ranker:1", "compiled")  # from disk, compiled
            assert second.models.current("explore") is None  # never had one: the heuristic
            app = build_app(client, cfg, second.models, hydrator=GivenFeatures(), now_ms=NOW)
            body = app.feed("home", 5, 5)
            assert body["model_version"] == "feed_ranker:1" and body["scorer"] == "compiled", body
            assert "registry" in body["degraded"], body
            explore = app.feed("explore", 5, 5)
            assert explore["model_version"] == "heuristic", explore
            assert explore["heuristic_reason"] == REGISTRY_UNREACHABLE and "registry" in explore["degraded"]
        finally:
            second.close()


def test_a_fresh_start_on_a_file_that_is_no_registry_serves_the_heuristic_and_is_ready(world, redis_server,
                                                                                     http_for, tmp_path):
    client, cfg = world
    corrupt = tmp_path / "mlflow.db"
    corrupt.write_bytes(b"not a database at all" * 100)
    settings = Settings(home=tmp_path / "loupe", world="tiny", redis_url=redis_server.url,
                        mlflow_tracking_uri=f"sqlite:///{corrupt}")
    app = RankingApp.from_settings(settings, cfg)  # before: raised here, in every worker, every restart
    try:
        assert wait_ready(app, READY_S), app.models.status()
        http = http_for(app)
        assert http.get("/readyz").status_code == 200
        body = app.feed("home", 1, 5)
        assert body["model_version"] == "heuristic" and body["heuristic_reason"] == REGISTRY_UNREACHABLE, body
        assert "registry" in body["degraded"] and body["degraded_reasons"]["registry"], body
    finally:
        app.close()
