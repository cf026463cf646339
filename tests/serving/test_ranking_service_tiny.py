"""The ranking service on the tiny world, built the way production builds it: features materialized by
the Dagster assets into Feast's Redis online store (+ the packed view), candidate state from the
candidates assets, champions in a real MLflow registry, the app from settings (`from_settings`).

Checked: the compiled champion ranks Home, the impressions it logs carry exactly the features and
scores the model used (and LightGBM's own predict gives the same scores for them); the champion is
swapped under concurrent requests with none dropped; a dead feature store, a failing or slow model
and an unreachable registry degrade to the heuristic, never to an error."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import redis

from features.online.ranking import RankingFeatureReader
from serving.admission import Admission
from serving.app import RankingApp, wait_ready
from serving.clock import Clock
from serving.config import BudgetConfig, ServingConfig
from serving.model_store import ModelStore
from serving.pipeline import drain_side_effects
from serving.scoring_model import ScoringModel
from tests.candidates.helpers import FlakyRedis
from tests.serving.helpers import patient, random_ranker, register_champion


@pytest.fixture(scope="module")
def app(platform):
    served, *_ = platform
    # no budget runs out here; served posts stay unseen, so a viewer asked again and again under
    # load still has a full page (the seen set would empty it: not what these tests are about)
    app = RankingApp.from_settings(served, patient(ServingConfig.load()).with_("impressions", record_seen=False))
    assert wait_ready(app, 180), app.models.status()
    yield app
    app.close()


def test_the_compiled_champion_ranks_home_and_logs_what_it_scored(platform, app):
    served, store, names, viewers, versions, next_day = platform
    responses = [app.feed("home", v, 10) for v in viewers[:20]]
    ranked = [r for r in responses if r["items"]]
    assert len(ranked) >= 10
    for r in ranked:
        assert r["model_version"] == f"feed_ranker:{versions['home']}" and r["scorer"] == "compiled"
        assert r["degraded"] == [], r["degraded_reasons"]
        assert sum(r["candidates"].values()) > len(r["items"])
    explore = app.feed("explore", viewers[0], 10)
    assert explore["model_version"] == f"explore_ranker:{versions['explore']}" and explore["items"]

    # log and learn: the impression rows carry the model's own feature vectors and scores
    writer = app.closers[0]
    assert drain_side_effects(timeout_s=600) and writer.flush()  # impressions are logged off the request thread
    path = served.landing_dir / "impressions" / next_day
    rows = [json.loads(line) for f in sorted(path.glob("*.jsonl")) for line in f.read_text().splitlines()]
    by_request = {r["request_id"]: r for r in ranked}
    logged = [row for row in rows if row["request_id"] in by_request]
    assert len(logged) == sum(len(r["items"]) for r in ranked)
    features = np.array([[np.nan if v is None else v for v in row["features"]] for row in logged], dtype=np.float32)
    assert features.shape[1] == len(names)
    model = app.models.current("home")
    ranker_scores = np.array([row["score"] for row in logged])
    # the same vectors through LightGBM's own predict: the compiled champion scored exactly these
    from training.tracking import connect, load_ranker

    ranker, _ = load_ranker(connect(served.tracking_uri), "feed_ranker", "champion")
    np.testing.assert_allclose(ranker.predict(features), ranker_scores, atol=1e-6)
    np.testing.assert_allclose(model.full(features), ranker_scores, atol=1e-6)
    for row in logged:
        item = next(i for i in by_request[row["request_id"]]["items"] if i["post_id"] == row["post_id"])
        assert row["position"] == item["position"] and row["source"] == item["source"]
        assert row["model_version"] == f"feed_ranker:{versions['home']}"


def test_the_champion_is_swapped_under_load_without_dropping_a_request(platform, app):
    served, store, names, viewers, versions, _ = platform
    old = f"feed_ranker:{versions['home']}"
    stop = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []
    answered = threading.Condition()  # every answer (or error) is signalled: the test waits on it

    def hammer(viewer: int) -> None:
        while not stop.is_set():
            try:
                r = app.feed("home", viewer, 10)
                with answered:
                    if r["items"]:  # an empty page is ranked by nobody (reported as the heuristic)
                        seen.append(r["model_version"])
                    answered.notify_all()
            except BaseException as exc:  # noqa: BLE001 - any failure fails the test
                with answered:
                    errors.append(exc)
                    answered.notify_all()

    def until(condition) -> None:
        with answered:  # the timeout only turns a hang into a failure
            assert answered.wait_for(lambda: condition() or errors, timeout=600), "no answers"

    with ThreadPoolExecutor(4) as pool:
        try:
            for v in viewers[20:24]:  # more requests than scoring slots: they queue within the budget
                pool.submit(hammer, v)
            until(lambda: len(seen) >= 10)  # the old champion is serving
            new_version = register_champion(served.tracking_uri, served.home / "unused", "home", "feed_ranker",
                                             random_ranker(names, seed=9))
            app.models.refresh()  # what the poller does every poll_s (load, serve, compile, swap again)
            new = f"feed_ranker:{new_version}"
            until(lambda: seen.count(new) >= 10)  # ... and the new one, under the same load
        finally:
            stop.set()
    assert not errors and len(seen) > 20
    assert set(seen) <= {old, new}  # every request ranked by a champion, none dropped
    assert old in seen
    after = app.feed("home", viewers[24], 10)
    assert after["model_version"] == new and after["scorer"] == "compiled", after
    assert app.models.current("home").engine == "compiled"


def test_an_overloaded_worker_answers_from_the_cheap_path_and_never_with_an_empty_page(platform, app):
    """Without admission, at concurrency 8, 89 % of pages were heuristic-ranked after queueing past
    their budget, some empty. A request that waited past `admission.max_wait_ms`, or that finds
    `max_in_flight` requests in the full pipeline, is answered at once by the cheap path: the
    surface's cheapest sources, newest first, through the same privacy filters, saying so."""
    served, store, names, viewers, versions, _ = platform
    viewer = viewers[30]
    full = app.feed("home", viewer, 10)
    assert full["items"] and full["model_version"].startswith("feed_ranker:")  # the champion (maybe swapped)

    waited = app.config.admission.max_wait_ms / 1000 * 2
    late = app.feed("home", viewer, 10, arrived=time.perf_counter() - waited)
    assert late["items"], late  # the viewer has candidates: never an empty page
    assert late["degraded"] == ["overload"] and "ms for a worker" in late["degraded_reasons"]["overload"]
    assert late["model_version"] == "heuristic" and late["heuristic_reason"] == "overload"
    assert set(late["candidates"]) == set(app.config.admission.home_sources)
    in_network = [i for i in late["items"] if i["source"] in ("in_network", "celebrity")]
    assert [i["score"] for i in late["items"]] == sorted((i["score"] for i in late["items"]), reverse=True)
    assert in_network, late  # followed accounts' posts: the cheap Home is still a Home
    for name in ("filters", "dedupe"):  # the same privacy filters and dedupe as the full pipeline
        assert type(getattr(app.cheap["home"], name)) is type(getattr(app.home, name))
    assert app.cheap["home"].filters is app.home.filters and app.cheap["explore"].filters is app.explore.filters

    explore = app.feed("explore", viewer, 10, arrived=time.perf_counter() - waited)
    assert explore["items"] and explore["degraded"] == ["overload"]

    busy = replace(app, admission=Admission(app.config.admission.model_copy(update={"max_in_flight": 1})))
    with busy.admission.enter(0.0):  # one request already runs the full pipeline
        crowded = busy.feed("home", viewer, 10)
    assert crowded["items"] and crowded["degraded_reasons"] == {"overload": "1 requests in flight (limit 1)"}
    again = busy.feed("home", viewer, 10)  # it finished: the full pipeline again
    assert again["degraded"] == [] and again["model_version"] == full["model_version"]

    ranked = app.rank("home", viewer, [i["post_id"] for i in full["items"]], arrived=time.perf_counter() - waited)
    assert ranked["degraded"] == ["overload"] and len(ranked["items"]) == len(full["items"])


def test_the_cheap_path_has_its_own_budget_so_privacy_is_read_again(platform, app, redis_server, monkeypatch):
    """bench-overload, concurrency 16: 23 of 3,300 overloaded pages came back empty. A request on the
    cheap path had spent its whole budget queueing, so after two failed privacy reads there was no
    time for a third and the filters failed closed. The cheap path counts its own budget
    (`admission.cheap_budget_ms`) from when it starts."""
    served, store, names, viewers, *_ = platform
    flaky = FlakyRedis(redis_server.url, fail=2)  # the first two privacy reads time out
    chain = app.cheap["home"].filters.chain
    monkeypatch.setattr(chain, "client", flaky)
    monkeypatch.setattr(chain, "retry_client", flaky)  # the retries' own client fails alike
    spent = app.config.budget.total_ms / 1000 * 2  # it queued for twice its whole budget
    page = app.feed("home", viewers[30], 10, arrived=time.perf_counter() - spent)
    assert flaky.executed == 3 and page["items"], page  # the third read, within the cheap path's budget
    assert page["degraded"] == ["overload"]


def _app_with(platform, model_full=None, hydrator_redis=None, lookup=None, budget_ms=None):
    """An app like production's but with one dependency replaced by a broken or slow one; patient
    timeouts (`budget_ms` when the test is about the budget running out)."""
    served, store, names, *_ = platform
    cfg = patient(ServingConfig.load()).with_("impressions", enabled=False, record_seen=False)
    if budget_ms is not None:
        cfg = cfg.with_("budget", total_ms=budget_ms)
    base = RankingApp.from_settings(served, cfg)
    wait_ready(base, 120)
    models = base.models
    if lookup is not None:
        models.stop()
        models = ModelStore(lookup, None, cfg.model, cfg.cascade, served.home / "serving" / "compiled")
    if model_full is not None:
        models.stop()  # the poller must not put the real champion back during the test
        current = base.models.current("home")
        models.swap("home", ScoringModel("feed_ranker", "broken", "lightgbm", current.feature_names, model_full, None))
    hydrator = base.home.hydrator
    if hydrator_redis is not None:
        hydrator = _packed_hydrator(store, hydrator_redis)
    client = redis.Redis.from_url(served.redis_url, socket_timeout=30)
    return RankingApp.build(cfg, candidates_client=client, hydrator=hydrator, models=models,
                            clock=Clock.starting_at(served.now)), base


def _packed_hydrator(store, url):
    from serving.stages.feature_hydrator import PackedFeatureHydrator

    client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=30)
    return PackedFeatureHydrator(RankingFeatureReader(store, client=client), BudgetConfig().model_min_ms)


def test_a_dead_feature_store_degrades_to_the_heuristic(platform):
    *_, viewers, _, _ = platform
    app, base = _app_with(platform, hydrator_redis="redis://127.0.0.1:1/0")
    r = app.feed("home", viewers[-1], 10)
    assert r["items"] and r["scorer"] == "heuristic" and r["model_version"] == "heuristic", r
    assert {"hydrate", "score"} <= set(r["degraded"])
    base.close()


def test_a_failing_or_slow_model_degrades_to_the_heuristic(platform):
    *_, viewers, _, _ = platform

    def broken(x):
        raise RuntimeError("model crashed")

    app, base = _app_with(platform, model_full=broken)
    r = app.feed("home", viewers[-2], 10)
    assert r["items"] and r["scorer"] == "heuristic" and r["degraded_reasons"]["score"].startswith("error"), r
    base.close()

    release = threading.Event()

    def stuck(x):  # a model that never answers within any budget
        release.wait()
        return np.zeros(len(x))

    app, base = _app_with(platform, model_full=stuck, budget_ms=3_000)
    r = app.feed("home", viewers[-3], 10)  # answered while the model is still stuck
    assert r["items"] and r["scorer"] == "heuristic" and r["degraded_reasons"]["score"] == "model over budget", r
    release.set()
    base.close()


def test_an_unreachable_registry_keeps_the_champion_kept_on_disk_and_says_so(platform):
    """A fresh store whose registry is down serves the champion the service kept on disk (compiled
    beside its manifest), is ready, and every page says the registry is degraded."""
    *_, viewers, _, _ = platform

    def down(name):
        raise ConnectionError("registry unreachable")

    faulty, base = _app_with(platform, lookup=down)
    faulty.models.refresh()
    r = faulty.feed("home", viewers[-4], 10)
    champion = base.models.current("home")  # what a healthy start served and kept on disk
    assert champion is not None and r["items"] and r["model_version"] == champion.label, r
    assert "registry" in r["degraded"], r
    assert faulty.models.ready()
    base.close()
