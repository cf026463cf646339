"""One BentoML HTTP app per test session (BentoML registers its metrics globally: a second app in
the same process would clash); each test points it at the RankingApp it built, and sends that app's
API token (every app has its own; tests of the token take the header away or replace it)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

import serving.service as service_module


class AppSwitch:
    """Stands in for the RankingApp the service built; forwards to the test's current app."""

    target = None

    def __getattr__(self, name):
        return getattr(self.target, name)

    def close(self) -> None:  # the session's end: each test's app is closed by its test
        pass


@pytest.fixture(scope="session")
def _http_session():
    switch = AppSwitch()
    with TestClient(service_module.ranking_service(lambda: switch).to_asgi()) as http:
        yield http, switch


@pytest.fixture
def http_for(_http_session):
    """`http_for(app)`: the real HTTP app (validation, routing, probes, /metrics) serving `app`."""
    http, switch = _http_session

    def serve(app):
        switch.target = app
        http.headers["authorization"] = f"Bearer {app.access.token}"
        return http

    yield serve
    switch.target = None
    http.headers.pop("authorization", None)


@pytest.fixture(scope="module")
def platform(tiny_lake, redis_server, tmp_path_factory):
    """The tiny world served as production serves it: features materialized by the Dagster assets into
    Feast's Redis online store (+ the packed view), candidate state from the candidates assets, random
    champions in a real MLflow registry. Yields (settings, feature store, feature names, viewers,
    champion versions, the serve day)."""
    yield from _platform(tiny_lake, redis_server.url.rsplit("/", 1)[0] + "/7", tmp_path_factory)


@pytest.fixture(scope="module")
def cluster_platform(tiny_lake, redis_cluster, tmp_path_factory):
    """`platform` on a three-primary Valkey cluster: the same world, features and champions."""
    yield from _platform(tiny_lake, redis_cluster.url, tmp_path_factory)


def _platform(tiny_lake, redis_url: str, tmp_path_factory):
    import dagster as dg

    from candidate_gen.rebuild import active_viewers
    from data.days import days_after
    from data.redis_client import connect
    from features.online.ranking import RankingFeatureReader
    from features.store import feature_store
    from pipelines.defs.features.assets import feast_online, feast_registry, feature_assets
    from pipelines.operations import prepare_candidate_state
    from pipelines.partitions import materialize_day
    from pipelines.resources import build_resources
    from tests.serving.helpers import random_ranker, register_champion
    from training.models import LAMBDARANK

    settings, summary, _ = tiny_lake
    days = summary.days
    connect(redis_url).flushdb()
    resources = build_resources(settings, redis_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize_day(feature_assets, partition_key=days[-1], instance=instance, resources=resources).success
        assert materialize_day([feast_registry], instance=instance, resources=resources).success
        assert materialize_day([feast_online], partition_key=days[-1], instance=instance, resources=resources).success
        state = prepare_candidate_state(resources, instance, days[-1], days[-2])
        assert set(state.metadata) == {f"candidates/{a}" for a in ("rebuild", "fanout", "trending", "social",
                                                                   "fatigue", "integrity", "embeddings",
                                                                   "search_index", "stories")}
        assert state.metadata["candidates/stories"]["stories"] > 0  # live at the day's end: the service's now
    home = tmp_path_factory.mktemp("serving")
    next_day = days_after(days[-1], 1)
    served = settings.with_(redis_url=redis_url, mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
                     now=f"{next_day}T00:00:01Z")
    store = feature_store(served, redis_url)
    names = RankingFeatureReader(store, client=connect(redis_url)).feature_names
    versions = {
        "home": register_champion(served.tracking_uri, home / "mlartifacts", "home", "feed_ranker",
                                  random_ranker(names)),
        "explore": register_champion(served.tracking_uri, home / "mlartifacts", "explore", "explore_ranker",
                                     random_ranker(names, LAMBDARANK)),
    }
    viewers = [int(v) for v in active_viewers(settings.lake_dir, days[-1], 1)[:40]]
    yield served, store, names, viewers, versions, next_day
    connect(redis_url).flushdb()
