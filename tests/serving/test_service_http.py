"""The ranking service's HTTP app (BentoML's own ASGI app, in-process) on a synthetic social world in
real Valkey: validation (4xx with a reason), Home's Explore share, pagination, cold start, /v1/rank,
probes and metrics, a dead or slow Redis (200 and degraded, never 5xx), and the privacy property over
generated worlds driven through the endpoints."""

from __future__ import annotations

import time
from typing import get_type_hints

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candidate_gen.config import FanoutConfig
from data.redis_server import EmbeddedRedis
from serving.model_store import ModelStore
from serving.pages import FeedPage, Item, RankedPosts
from serving.pipeline import drain_side_effects
from serving.service import FeedItem, FeedResponse, RankResponse
from tests.candidates.helpers import HOUR, T0
from tests.candidates.privacy_oracle import N_USERS, pair, to_events, user_ids
from tests.serving.helpers import build_app, explore_sets, serving_config, social_world, write_world

NOW = T0 + 10 * HOUR


def no_registry(cfg) -> ModelStore:
    return ModelStore(lambda name: None, None, cfg.model, cfg.cascade, "/nonexistent")


@pytest.fixture
def world(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config(home={"out_of_network_share": 0.3})
    rows = social_world()
    write_world(client, cfg, rows)
    posts = [(r[2], r[3]) for r in rows if r[1] == "post"]
    explore_sets(client, cfg, posts)
    yield client, cfg, posts
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


def test_bad_requests_get_a_4xx_with_the_reason(world, http_for):
    client, cfg, _ = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    cases = [
        ({"viewer_id": 1, "limit": 0}, "greater than or equal to 1"),
        ({"viewer_id": 1, "limit": 101}, "less than or equal to 100"),
        ({"viewer_id": "1", "limit": 5}, "valid integer"),
        ({"limit": 5}, "Field required"),
        ({"viewer_id": 1, "cursor": "not-ours"}, "cursor is not one this service issued"),
    ]
    for body, reason in cases:
        r = http.post("/v1/feed/home", json=body)
        assert r.status_code == 400, body
        assert reason in r.text, (body, r.text)
    r = http.post("/v1/feed/home", content=b'{"viewer_id": 1,', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "Invalid JSON" in r.text
    r = http.post("/v1/rank", json={"viewer_id": 1, "surface": "reels", "post_ids": [1]})
    assert r.status_code == 400 and "home" in r.text
    r = http.post("/v1/rank", json={"viewer_id": 1, "surface": "home", "post_ids": []})
    assert r.status_code == 400


def test_home_mixes_in_network_and_explore_up_to_the_share_and_pages_on(world, http_for):
    client, cfg, posts = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    r = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 10})
    assert r.status_code == 200
    body = r.json()
    FeedResponse.model_validate_json(r.content, strict=True)  # the schema its OpenAPI document declares
    assert set(body) == set(FeedResponse.model_fields)
    items = body["items"]
    assert len(items) == 10
    assert [i["position"] for i in items] == list(range(10))
    assert body["model_version"] == "heuristic" and body["scorer"] == "heuristic"
    assert body["degraded"] == ["hydrate"]  # this app has no feature store (no champion: not degraded)
    explore = [i for i in items if i["source"] not in ("in_network", "celebrity")]
    assert len(explore) <= 3  # at most 30 % of 10
    following = {(1 + k - 1) % 12 + 1 for k in range(1, 6)}
    assert all(i["author_id"] in following for i in items if i["source"] == "in_network")
    assert all(i["author_id"] != 1 for i in items)  # never the viewer's own posts
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    assert body["candidates"]["in_network"] > 0 and body["candidates"]["trending"] > 0
    # the next page: new posts only (served posts joined the seen set), positions go on
    assert drain_side_effects(120)  # the seen-set write is a side effect, off the request path
    nxt = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 10, "cursor": body["next_cursor"]}).json()
    assert [i["position"] for i in nxt["items"]] == list(range(10, 10 + len(nxt["items"])))
    assert not {i["post_id"] for i in nxt["items"]} & {i["post_id"] for i in items}
    assert nxt["filtered"].get("already_seen", 0) >= 10


def test_the_explore_share_caps_suggestions_even_when_they_score_higher(world, http_for):
    client, cfg, _ = world
    cfg = cfg.with_("heuristic", in_network_bonus=-0.5, recency_half_life_h=1e9)  # suggestions win
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    items = http.post("/v1/feed/home", json={"viewer_id": 4, "limit": 10}).json()["items"]
    assert [i["source"] != "in_network" for i in items].count(True) == 3
    explore = http.post("/v1/feed/explore", json={"viewer_id": 4, "limit": 10}).json()["items"]
    assert all(i["source"] != "in_network" for i in explore) and len(explore) == 10


def test_home_fills_with_suggestions_when_the_network_is_exhausted(world, http_for):
    client, cfg, _ = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    items = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 100}).json()["items"]
    in_net = [i for i in items if i["source"] == "in_network"]
    assert len(in_net) == 5 * 6  # five followees, six posts each
    assert len(items) > len(in_net) + 30  # suggestions beyond the 30 % share: the network ran dry
    cfg2 = cfg.with_("home", fill_with_out_of_network=False)
    client.delete(cfg.candidates.keys.seen(2))
    http2 = http_for(build_app(client, cfg2, no_registry(cfg2), now_ms=NOW))
    items2 = http2.post("/v1/feed/home", json={"viewer_id": 2, "limit": 100}).json()["items"]
    assert len([i for i in items2 if i["source"] != "in_network"]) == 30


def test_unknown_viewer_gets_a_cold_start_explore_feed(world, http_for):
    client, cfg, _ = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    for route in ("/v1/feed/home", "/v1/feed/explore"):
        body = http.post(route, json={"viewer_id": 999_999, "limit": 8}).json()
        assert len(body["items"]) == 8
        assert {i["source"] for i in body["items"]} <= {"trending", "popular", "embedding", "social"}


def test_rank_scores_supplied_posts_and_says_why_others_are_missing(world, http_for):
    client, cfg, posts = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    write_world(client, cfg, [(T0 + 5 * HOUR, "block", 7, 3, 0)])  # author 7 blocked viewer 3
    own = [p for p, a in posts if a == 3][:2]
    blocked = [p for p, a in posts if a == 7][:2]
    fine = [p for p, a in posts if a == 4][:3]
    r = http.post("/v1/rank", json={"viewer_id": 3, "surface": "explore",
                                    "post_ids": [*fine, *blocked, *own, 5_000_000, fine[0]]})
    body = r.json()
    RankResponse.model_validate_json(r.content, strict=True)
    assert set(body) == set(RankResponse.model_fields)
    assert sorted(i["post_id"] for i in body["items"]) == sorted(fine)
    assert [i["position"] for i in body["items"]] == list(range(len(fine)))
    assert body["not_rankable"] == 5 and "filtered" not in body  # blocked 2, own 2, unknown 1: not said which


def test_probes_and_metrics(world, http_for):
    client, cfg, _ = world
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 5})
    text = http.get("/metrics").text
    for family in ("loupe_stage_seconds_bucket", "loupe_candidates_total", "loupe_filtered_total",
                   "loupe_fallbacks_total", "loupe_request_seconds", "loupe_served_total"):
        assert family in text, family
    assert 'loupe_stage_seconds_count{stage="filters",surface="home"}' in text


def test_dead_and_slow_redis_degrade_the_response_never_fail_it(http_for, tmp_path):
    with EmbeddedRedis(data_dir=tmp_path, persist=True) as server:
        cfg = serving_config()  # patient budget: the stall below is the only fault
        client = redis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        write_world(client, cfg, social_world())
        http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
        ok = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 5}).json()
        assert len(ok["items"]) == 5

        # Every command waits 5 s: each of the request's Redis calls meets its 0.5 s socket
        # timeout inside the pause (CLIENT UNPAUSE would wait too, so the pause runs out).
        redis.Redis.from_url(server.url).execute_command("CLIENT", "PAUSE", 5_000, "ALL")
        slow = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 5})
        assert slow.status_code == 200
        assert "sources.in_network" in slow.json()["degraded"]
        wait_until_answering(server.url)

        server.stop()
        dead = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 5})
        assert dead.status_code == 200
        body = dead.json()
        assert body["items"] == [] and "sources.in_network" in body["degraded"]
        assert http.post("/v1/rank", json={"viewer_id": 1, "surface": "home", "post_ids": [1000]}).status_code == 200
        server.start()
        again = http.post("/v1/feed/home", json={"viewer_id": 2, "limit": 5}).json()
        assert len(again["items"]) == 5 and not any(d.startswith("sources") for d in again["degraded"])


def wait_until_answering(url: str, deadline_s: float = 120.0) -> None:
    """Poll until the server answers again (a generous deadline: a busy machine is slow, not broken)."""
    probe = redis.Redis.from_url(url, socket_timeout=1.0)
    end = time.monotonic() + deadline_s
    while True:
        try:
            probe.ping()
            return
        except redis.TimeoutError:
            assert time.monotonic() < end, "the paused server never answered again"


@pytest.fixture
def privacy_http(redis_server, http_for):
    """One app for every generated world (each world is written afresh under its key prefix); every
    page is explored (served in a random order), which must never let a forbidden post in."""
    cfg = serving_config(impressions={"record_seen": False}, exploration={"share": 1.0, "seed": 7})
    client = redis.Redis.from_url(redis_server.url)
    http = http_for(build_app(client, cfg, no_registry(cfg), now_ms=NOW))
    yield client, cfg, http
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


# Every kind of event about equally likely (posts twice): blocks, mutes, requests and privacy
# changes must be common in the generated worlds for the property to bite.
action = st.one_of(
    st.tuples(st.sampled_from(["follow", "approve", "unfollow", "block", "unblock", "mute", "unmute"]), pair),
    st.tuples(st.just("user"), st.tuples(user_ids, st.booleans())),
    st.tuples(st.just("post"), user_ids),
    st.tuples(st.just("post"), user_ids),
    st.tuples(st.just("delete"), st.integers(0, 40)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    private=st.sets(user_ids, max_size=4),
    actions=st.lists(action, min_size=5, max_size=60),
    batch=st.integers(1, 25),
)
def test_no_endpoint_ever_serves_a_post_the_viewer_may_not_see(privacy_http, private, actions, batch):
    """Generated worlds (follows, requests, approvals, privacy changes, blocks, mutes, posts,
    deletions in any order, applied in random batch sizes): every post is also a trending/popular
    candidate, so Home, Explore and /v1/rank each meet every post; none returns one the
    independent oracle forbids, and /v1/rank removes exactly what it must."""
    client, cfg, http = privacy_http
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])
    rows, oracle = to_events(private, actions)
    fanout = FanoutConfig(batch_events=batch)
    writer = cfg.model_copy(update={"candidates": cfg.candidates.model_copy(update={"fanout": fanout})})
    write_world(client, writer, rows)
    posts = sorted(oracle.author.items())
    if posts:
        explore_sets(client, cfg, posts)
    for viewer in range(1, N_USERS + 1):
        served = []
        for route in ("/v1/feed/home", "/v1/feed/explore"):
            r = http.post(route, json={"viewer_id": viewer, "limit": 100})
            assert r.status_code == 200
            served += [i["post_id"] for i in r.json()["items"]]
            assert not {"blocked", "muted"} & set(r.json()["filtered"])  # who blocked whom: never said
        if posts:
            r = http.post("/v1/rank", json={"viewer_id": viewer, "surface": "home", "post_ids": [p for p, _ in posts]})
            assert r.status_code == 200
            ranked = [i["post_id"] for i in r.json()["items"]]
            served += ranked
            allowed = {p for p, a in posts if oracle.may_see(viewer, p) and a != viewer}
            assert set(ranked) == allowed  # not over-eager either
        leaks = [p for p in served if not oracle.may_see(viewer, p)]
        assert not leaks, (viewer, leaks)


def test_the_app_answers_in_the_schema_the_service_publishes():
    """The routes serialise the app's typed dicts as they are: their keys are the response models'."""
    assert set(get_type_hints(FeedPage)) == set(FeedResponse.model_fields)
    assert set(get_type_hints(RankedPosts)) == set(RankResponse.model_fields)
    assert set(get_type_hints(Item)) == set(FeedItem.model_fields)
