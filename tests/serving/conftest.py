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
    mp = pytest.MonkeyPatch()
    mp.setattr(service_module, "APP_FACTORY", lambda: switch)
    with TestClient(service_module.RankingService.to_asgi()) as http:
        yield http, switch
    mp.undo()


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
