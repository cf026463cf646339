"""The API discloses nothing and changes nothing it shouldn't, through BentoML's
own HTTP app in-process on a synthetic social world in real Valkey.

Checked, each a finding of the review: /v1/rank says how many supplied posts it could not rank, not
who muted or blocked whom; every route but the probes and /metrics (configurable) wants the bearer
token, and a call without it changes nothing; cursors are signed, bound to viewer and surface, and
expire; ids beyond int64, bodies that are not JSON and bodies over the limit are refused before the
service runs; every served page's impressions are logged (offsets are bounded).

The `http_for` fixture sends the token of the app it serves (`app.access.token`); tests of a
missing or wrong token take it away or replace it.
"""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
import redis

from serving.clock import Clock
from serving.config import ServingConfig
from serving.impression_log import ImpressionLogWriter
from serving.model_store import ModelStore
from serving.pipeline import drain_side_effects
from tests.candidates.helpers import HOUR, T0
from tests.serving.helpers import build_app, explore_sets, serving_config, social_world, write_world

NOW = T0 + 10 * HOUR
INT64_MAX = 2**63 - 1
FEEDS = ("/v1/feed/home", "/v1/feed/explore")


def no_registry(cfg) -> ModelStore:
    return ModelStore(lambda name: None, None, cfg.model, cfg.cascade, "/nonexistent")


@pytest.fixture
def world(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config()
    rows = social_world() + [(T0 + 5 * HOUR, "block", 7, 3, 0), (T0 + 5 * HOUR, "mute", 3, 4, 0)]
    write_world(client, cfg, rows)
    posts = [(r[2], r[3]) for r in rows if r[1] == "post"]
    explore_sets(client, cfg, posts)
    yield client, cfg, posts
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


@contextlib.contextmanager
def token(http, value: str | None):
    """Requests in the block carry `value` as their bearer token (None: no Authorization header)."""
    saved = http.headers.get("authorization")
    http.headers.pop("authorization", None)
    if value is not None:
        http.headers["authorization"] = f"Bearer {value}"
    try:
        yield http
    finally:
        http.headers.pop("authorization", None)
        if saved is not None:
            http.headers["authorization"] = saved


def old_cursor(payload) -> str:
    """A cursor as the service used to issue them: unsigned base64 JSON that anyone could write."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_rank_says_how_many_posts_it_could_not_rank_not_why(world, http_for):
    client, cfg, posts = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    muted = [p for p, a in posts if a == 4][:2]  # viewer 3 muted author 4
    blocked = [p for p, a in posts if a == 7][:2]  # author 7 blocked viewer 3
    fine = [p for p, a in posts if a == 5][:3]
    r = http.post("/v1/rank", json={"viewer_id": 3, "surface": "home", "post_ids": [*fine, *muted, *blocked]})
    assert r.status_code == 200
    body = r.json()
    assert sorted(i["post_id"] for i in body["items"]) == sorted(fine)
    assert body["not_rankable"] == 4 and "filtered" not in body, body
    assert "muted" not in r.text and "blocked" not in r.text
    # the reasons stay with the operator: metrics
    text = http.get("/metrics").text
    assert 'loupe_filtered_total{reason="muted",surface="rank"}' in text
    assert 'loupe_filtered_total{reason="blocked",surface="rank"}' in text


def test_every_route_wants_the_token_but_the_probes_and_metrics(world, http_for):
    client, cfg, posts = world
    app = build_app(client, cfg, no_registry(cfg), now_ms=NOW)
    http = http_for(app)
    seen = cfg.candidates.keys.seen(1)
    calls = [(route, {"viewer_id": 1, "limit": 10}) for route in FEEDS]
    calls.append(("/v1/rank", {"viewer_id": 1, "surface": "home", "post_ids": [p for p, _ in posts[:5]]}))
    for value in (None, "", "not-the-token", "its own token and more"):
        if value == "its own token and more":
            value = app.access.token + "x"
        with token(http, value):
            for route, body in calls:
                r = http.post(route, json=body)
                assert r.status_code == 401, (route, value, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
            assert http.get("/docs.json").status_code == 401  # the API's description too
            for probe in ("/livez", "/healthz", "/readyz", "/metrics"):  # open by default
                assert http.get(probe).status_code == 200, probe
    assert not client.exists(seen)  # refused calls marked nothing seen
    r = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 10})  # http_for sends the app's token
    assert r.status_code == 200 and len(r.json()["items"]) == 10
    with token(http, app.access.token):
        assert http.post("/v1/rank", json=calls[-1][1]).status_code == 200


def test_probes_and_metrics_can_want_the_token_too(world, http_for):
    client, cfg, _ = world
    cfg = cfg.with_("api", probes_open=False, metrics_open=False)
    app = build_app(client, cfg, no_registry(cfg), now_ms=NOW)
    http = http_for(app)
    with token(http, None):
        for path in ("/livez", "/healthz", "/readyz", "/metrics"):
            assert http.get(path).status_code == 401, path
    for path in ("/livez", "/healthz", "/readyz", "/metrics"):
        assert http.get(path).status_code == 200, path


def test_cursors_are_signed_bound_to_viewer_and_surface_and_expire(world, http_for):
    client, cfg, _ = world
    app = build_app(client, cfg, no_registry(cfg), now_ms=NOW)
    http = http_for(app)
    first = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 5}).json()
    cursor = first["next_cursor"]
    nxt = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 5, "cursor": cursor})
    assert nxt.status_code == 200 and [i["position"] for i in nxt.json()["items"]] == [5, 6, 7, 8, 9]

    def refused(route: str, viewer: int, cursor: str, reason: str) -> None:
        r = http.post(route, json={"viewer_id": viewer, "limit": 5, "cursor": cursor})
        assert r.status_code == 400 and reason in r.text, (cursor, r.text)

    refused("/v1/feed/home", 2, cursor, "another viewer or surface")  # foreign: another viewer's
    refused("/v1/feed/explore", 1, cursor, "another viewer or surface")  # ... or another surface's
    forged = [old_cursor({"o": 5}), old_cursor({"o": True}), old_cursor({"o": 2**63}), old_cursor({"o": 10**100}),
              cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB"), cursor + "A", "A" * 150, "."]
    for bad in forged:
        refused("/v1/feed/home", 1, bad, "cursor is not one this service issued")
    # once its `cursor_ttl_s` (serving/config.toml [api]) has passed, the same cursor has expired
    app.clock = Clock(NOW + int(cfg.api.cursor_ttl_s * 1000) + 60_000)
    refused("/v1/feed/home", 1, cursor, "expired")


def test_ids_are_int64(world, http_for, tmp_path):
    client, cfg, posts = world
    with ImpressionLogWriter(tmp_path / "landing", "t", flush_interval_s=0.05) as writer:
        http = http_for(build_app(client, cfg, no_registry(cfg), impressions=writer, now_ms=NOW))
        for viewer in (2**63, 10**30, -1):
            for route in FEEDS:
                assert http.post(route, json={"viewer_id": viewer, "limit": 5}).status_code == 400, (route, viewer)
            r = http.post("/v1/rank", json={"viewer_id": viewer, "surface": "home", "post_ids": [posts[0][0]]})
            assert r.status_code == 400, viewer
        r = http.post("/v1/rank", json={"viewer_id": 1, "surface": "home", "post_ids": [posts[0][0], 2**63]})
        assert r.status_code == 400
        r = http.post("/v1/rank", json={"viewer_id": INT64_MAX, "surface": "home", "post_ids": [INT64_MAX]})
        assert r.status_code == 200 and r.json()["not_rankable"] == 1  # the largest ids are ids
        assert http.post("/v1/feed/home", json={"viewer_id": INT64_MAX, "limit": 5}).status_code == 200
        assert drain_side_effects(600)  # the impression hand-off runs off the request thread
        assert writer.stats()["logged_rows"] >= 5  # the cold-start page of INT64_MAX
        assert writer.flush(timeout_s=300)
    lines = [json.loads(x) for f in (tmp_path / "landing").rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert {line["viewer_id"] for line in lines} == {INT64_MAX}


def test_only_json_bodies_are_read(world, http_for):
    client, cfg, _ = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    form = http.post("/v1/feed/home", data={"viewer_id": "1", "limit": "5"})  # form-encoded
    assert form.status_code == 415, form.text
    as_text = http.post("/v1/feed/home", content=b'{"viewer_id": 1, "limit": 5}',
                        headers={"content-type": "text/plain"})
    assert as_text.status_code == 415
    bare = http.post("/v1/feed/home", content=b'{"viewer_id": 1, "limit": 5}', headers={"content-type": ""})
    assert bare.status_code == 415
    multipart = http.post("/v1/feed/home", files={"viewer_id": (None, "1")})
    assert multipart.status_code == 415
    ok = http.post("/v1/feed/home", content=b'{"viewer_id": 1, "limit": 5}',
                   headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_bodies_over_the_limit_are_refused(world, http_for):
    client, cfg, _ = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    big = json.dumps({"viewer_id": 1, "limit": 5, "pad": "x" * (10 * 2**20)}).encode()
    r = http.post("/v1/feed/home", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    limit = ServingConfig.load().api.max_body_bytes  # serving/config.toml
    assert cfg.api.max_body_bytes == limit < 10 * 2**20

    def chunks():  # no content-length: the body is counted as it arrives
        yield b'{"viewer_id": 1, "limit": 5, "pad": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    r = http.post("/v1/feed/home", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    # the largest legitimate body, 2,000 int64 ids, is well within it
    r = http.post("/v1/rank", json={"viewer_id": INT64_MAX, "surface": "explore",
                                    "post_ids": [INT64_MAX - k for k in range(2000)]})
    assert r.status_code == 200 and r.json()["not_rankable"] == 2000


def test_every_served_page_is_logged_and_offsets_are_bounded(world, http_for, tmp_path):
    client, cfg, _ = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    for big in (2**31, 2**63, 10**100):  # what the unsigned cursors let anyone ask for: pages whose
        r = http.post("/v1/feed/home", json={"viewer_id": 2, "limit": 5, "cursor": old_cursor({"o": big})})
        assert r.status_code == 400  # impressions the log could not hold (int32 positions) were dropped
    cfg = cfg.with_("api", max_offset=12)
    with ImpressionLogWriter(tmp_path / "landing", "t", flush_interval_s=0.05) as writer:
        http = http_for(build_app(client, cfg, no_registry(cfg), impressions=writer, now_ms=NOW))
        served, cursor = [], None
        while True:  # page to the end: next_cursor is null once max_offset is reached
            body = {"viewer_id": 2, "limit": 5} | ({"cursor": cursor} if cursor else {})
            page = http.post("/v1/feed/home", json=body).json()
            served += [(i["post_id"], i["position"]) for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [p for _, p in served] == list(range(15))  # pages at 0, 5, 10; none beyond 12
        assert drain_side_effects(600)
        assert writer.stats()["logged_rows"] == len(served)
        assert writer.flush(timeout_s=300)
        assert writer.stats()["dropped_rows"] == 0 and writer.stats()["written_rows"] == len(served)
    lines = [json.loads(x) for f in (tmp_path / "landing").rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert sorted((line["post_id"], line["position"]) for line in lines) == sorted(served)


def test_the_workspace_secrets_are_generated_once_and_the_environment_wins(tmp_path):
    from data.settings import Settings, serving_secrets
    from pipelines.summary import sample_request

    settings = Settings(home=tmp_path / "loupe")
    with pytest.raises(FileNotFoundError):
        serving_secrets(settings, create=False)  # a caller never invents the service's token
    made = serving_secrets(settings)  # make run, or the service's first start
    assert made == serving_secrets(settings) == serving_secrets(settings, create=False)  # every worker: the same
    assert made.api_token != made.cursor_secret and len(made.api_token) >= 32
    assert settings.api_token_file.stat().st_mode & 0o077 == 0  # the owner's only
    assert made.api_token not in repr(made) and made.api_token not in repr(settings)
    # make run's sample request reads the token where the service does, and never prints it
    assert f"$(cat {settings.api_token_file})" in sample_request(settings, "home", 42)
    assert made.api_token not in sample_request(settings, "home", 42)
    env = Settings.from_env({"LOUPE_HOME": str(tmp_path / "loupe"), "LOUPE_API_TOKEN": "from-the-env",
                             "LOUPE_CURSOR_SECRET": "also"})
    assert serving_secrets(env) == type(made)("from-the-env", "also")
    assert "$LOUPE_API_TOKEN" in sample_request(env, "home", 42)
