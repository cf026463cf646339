"""POST /v1/search through the real HTTP app, on a social world in real Valkey and a real index file:
text matches ranked for the viewer (a followed author first among equal matches), the feed's privacy
filters (blocked either way, muted, private and not approved, deleted: absent, and nothing in the
answer says why), a query with no word a 422, a missing index a degraded empty answer (never a 5xx),
and the privacy property over generated worlds against the independent oracle."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candidate_gen.search.post_text_index import PostText, PostTextIndex
from serving.app import RankingApp, service_redis
from serving.clock import Clock
from serving.search.search_scorer import SearchScorer
from serving.service import SearchItem, SearchResponse
from tests.candidates.helpers import HOUR, T0
from tests.candidates.privacy_oracle import N_USERS, to_events, user_ids
from tests.serving.helpers import no_features, serving_config, write_world
from tests.serving.test_service_http import action, no_registry

NOW = T0 + 10 * HOUR
VIEWER = 1
FOLLOWED, STRANGER, PRIVATE, PRIVATE_FOLLOWED, BLOCKS_VIEWER, BLOCKED, MUTED = 2, 3, 4, 5, 6, 7, 8
DELETED_POST = 303


def search_app(client, cfg, index_path: Path | None) -> RankingApp:
    app = RankingApp.build(cfg, candidates_client=client, hydrator=no_features(), models=no_registry(cfg),
                           clock=Clock(NOW), search_index=index_path)
    app.warm = True
    return app


@pytest.fixture
def world(redis_server, tmp_path):
    """Viewer 1; authors 2 (followed), 3 (a stranger), 4 (private), 5 (private, approved follower), 6
    (blocked the viewer), 7 (blocked by the viewer), 8 (muted by the viewer); each posted one
    "sunset" post an hour ago, author 3 a second one (303) since deleted. Every post is indexed
    (303 too: an index a little behind the stream; the tombstone filter still drops it)."""
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config()
    users = [(T0 - 100 * HOUR, "user", u, 0, int(u in (PRIVATE, PRIVATE_FOLLOWED))) for u in range(1, 9)]
    graph = [(T0 - 50 * HOUR, "follow", VIEWER, FOLLOWED, 0),
             (T0 - 50 * HOUR, "follow", VIEWER, PRIVATE_FOLLOWED, 0),
             (T0 - 49 * HOUR, "approve", VIEWER, PRIVATE_FOLLOWED, 0),
             (T0 - 48 * HOUR, "block", BLOCKS_VIEWER, VIEWER, 0),
             (T0 - 48 * HOUR, "block", VIEWER, BLOCKED, 0),
             (T0 - 48 * HOUR, "mute", VIEWER, MUTED, 0)]
    posted = NOW - HOUR
    posts = [(posted, "post", 100 * a, a, posted) for a in range(2, 9)]
    posts += [(posted, "post", DELETED_POST, STRANGER, posted), (posted + 1, "delete", DELETED_POST, STRANGER, posted)]
    write_world(client, cfg, users + graph + posts)
    path = tmp_path / "search" / "posts.sqlite"
    with PostTextIndex(path) as index:
        index.upsert([PostText(100 * a, a, posted, ["sunset", "nature"], "golden hour") for a in range(2, 9)])
        index.upsert([PostText(DELETED_POST, STRANGER, posted, ["sunset"], "golden hour")])
    yield client, cfg, path
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


def test_a_search_returns_only_what_the_viewer_may_see_best_first(world, http_for):
    client, cfg, path = world
    http = http_for(search_app(client, cfg, path))
    r = http.post("/v1/search", json={"viewer_id": VIEWER, "query": "#Sunset", "limit": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"]
    assert [i["post_id"] for i in items][:2] in ([100 * FOLLOWED, 100 * PRIVATE_FOLLOWED],
                                                [100 * PRIVATE_FOLLOWED, 100 * FOLLOWED])  # followed first
    assert {i["post_id"] for i in items} == {100 * FOLLOWED, 100 * STRANGER, 100 * PRIVATE_FOLLOWED}
    assert [i["position"] for i in items] == [0, 1, 2]
    assert body["degraded"] == [] and body["request_id"]
    # nothing says what was left out, or why
    assert set(body) == set(SearchResponse.model_fields) and set(items[0]) == set(SearchItem.model_fields)
    assert "block" not in r.text and "mute" not in r.text and "private" not in r.text
    # every word required, in any order; nothing matches: an empty page, not an error
    assert {i["post_id"] for i in http.post("/v1/search", json={"viewer_id": VIEWER, "query": "Hour GOLDEN"}).json()[
        "items"]} == {100 * FOLLOWED, 100 * STRANGER, 100 * PRIVATE_FOLLOWED}
    assert http.post("/v1/search", json={"viewer_id": VIEWER, "query": "gold sun"}).json()["items"] == []  # words
    assert http.post("/v1/search", json={"viewer_id": VIEWER, "query": "sunset pizza"}).json()["items"] == []
    # the blocker, the blocked, the muted and the private author see their own side alike: 6 does not
    # see 1's posts (none here), and a stranger does not see the private post
    r = http.post("/v1/search", json={"viewer_id": STRANGER, "query": "sunset", "limit": 10})
    assert {i["post_id"] for i in r.json()["items"]} == {100 * a for a in (FOLLOWED, BLOCKS_VIEWER, BLOCKED, MUTED)}


def test_query_syntax_is_never_an_error_and_a_query_with_no_word_is_a_422(world, http_for):
    client, cfg, path = world
    http = http_for(search_app(client, cfg, path))
    for query in ('sunset"', '"sunset', 'sun*', 'NEAR(sunset golden)', 'caption: golden', 'sunset OR x',
                  "sunset' --", "(sunset", "^sunset", "sunset NOT"):
        r = http.post("/v1/search", json={"viewer_id": VIEWER, "query": query})
        assert r.status_code == 200, (query, r.text)
    for query in ("", "   ", "#", '"*"', "NEAR(", "()"):
        r = http.post("/v1/search", json={"viewer_id": VIEWER, "query": query})
        if any(ch.isalnum() for ch in query):
            assert r.status_code == 200
            continue
        assert r.status_code == 422, (query, r.text)
        assert "no word" in r.json()["error"] and r.json()["items"] == []
    for body, reason in (({"viewer_id": "1", "query": "x"}, "valid integer"), ({"viewer_id": 1}, "Field required"),
                         ({"viewer_id": 1, "query": "x", "limit": 0}, "greater than or equal to 1"),
                         ({"viewer_id": 1, "query": 5}, "valid string"),
                         ({"viewer_id": 1, "query": "x" * 300}, "at most 256")):
        r = http.post("/v1/search", json=body)
        assert r.status_code == 400 and reason in r.text, (body, r.text)
    http.headers.pop("authorization")
    assert http.post("/v1/search", json={"viewer_id": VIEWER, "query": "sunset"}).status_code == 401


def test_a_missing_index_is_a_degraded_empty_answer(world, http_for, tmp_path):
    client, cfg, _ = world
    http = http_for(search_app(client, cfg, tmp_path / "never-built.sqlite"))
    r = http.post("/v1/search", json={"viewer_id": VIEWER, "query": "sunset"})
    assert r.status_code == 200 and r.json()["items"] == []
    assert r.json()["degraded"] == ["index"] and "no search index" in r.json()["degraded_reasons"]["index"]


def test_a_dead_redis_serves_nothing_unverified(world, http_for):
    _, cfg, path = world
    dead = service_redis("redis://127.0.0.1:1/0", 0.2)  # no retries of redis-py's own, as the service's
    r = http_for(search_app(dead, cfg, path)).post("/v1/search", json={"viewer_id": VIEWER, "query": "sunset"})
    assert r.status_code == 200 and r.json()["items"] == []
    assert "filters" in r.json()["degraded"]


def test_the_score_weighs_text_then_relationship_and_recency():
    from candidate_gen.block import CandidateBlock

    scorer = SearchScorer(0.6, 0.25, 0.15, 72.0)
    block = CandidateBlock.build([1, 2, 3], [10, 20, 30], [NOW, NOW, NOW - 72 * HOUR], "search", [2.0, 2.0, 1.0])
    import numpy as np

    s = scorer.score(block, NOW, np.array([True, False, False]), np.array([0.0, 1.0, 0.0]))
    assert s == pytest.approx([0.6 + 0.25 + 0.15, 0.6 + 0.125 + 0.15, 0.3 + 0.075])


@pytest.fixture
def privacy_search(redis_server, http_for, tmp_path):
    cfg = serving_config()
    client = redis.Redis.from_url(redis_server.url)
    path = tmp_path / "posts.sqlite"
    PostTextIndex(path).close()
    http = http_for(search_app(client, cfg, path))
    yield client, cfg, http, path
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


_worlds = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(private=st.sets(user_ids, max_size=4), actions=st.lists(action, min_size=5, max_size=60))
def test_search_never_returns_a_post_the_viewer_may_not_see(privacy_search, private, actions):
    """Generated worlds (follows, requests, approvals, privacy changes, blocks, mutes, posts,
    deletions in any order): every post is indexed with the same text (deleted ones too, as an index
    behind the stream would hold them); a search returns exactly the posts the independent oracle
    lets the viewer see (their own aside), never another."""
    client, cfg, http, path = privacy_search
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])
    rows, oracle = to_events(private, actions)
    write_world(client, cfg, rows)
    tag = f"world{next(_worlds)}"  # each world's posts under a word of its own: earlier worlds' never match
    created = {r[2]: r[4] for r in rows if r[1] == "post"}
    with PostTextIndex(path) as index:
        index.upsert([PostText(p, a, created[p], [tag], "sunset") for p, a in oracle.author.items()])
    for viewer in range(1, N_USERS + 1):
        r = http.post("/v1/search", json={"viewer_id": viewer, "query": f"#{tag} sunset", "limit": 100})
        assert r.status_code == 200 and r.json()["degraded"] == [], r.text
        got = {i["post_id"] for i in r.json()["items"]}
        allowed = {p for p, a in oracle.author.items() if oracle.may_see(viewer, p) and a != viewer}
        assert got == allowed, (viewer, got - allowed, allowed - got)


def test_search_applies_the_content_labels_outcomes_as_the_feed_does(world, http_for):
    """A spam stranger's post is dropped (out of network), a spam followed author's kept lower, a
    sensitive post covered; a search shows no more than a feed would."""
    from candidate_gen.integrity import Labels, write_labels

    client, cfg, path = world
    keys = cfg.candidates.keys
    labels = Labels({100 * PRIVATE_FOLLOWED: {"sensitive"}}, {STRANGER: {"spam"}, FOLLOWED: {"spam"}})
    write_labels(client, keys, labels)
    try:
        http = http_for(search_app(client, cfg, path))
        body = http.post("/v1/search", json={"viewer_id": VIEWER, "query": "sunset", "limit": 10}).json()
        items = {i["post_id"]: i for i in body["items"]}
        assert set(items) == {100 * FOLLOWED, 100 * PRIVATE_FOLLOWED}
        assert items[100 * PRIVATE_FOLLOWED]["interstitial"] == "sensitive"
        assert items[100 * FOLLOWED]["interstitial"] is None
        assert items[100 * FOLLOWED]["score"] < items[100 * PRIVATE_FOLLOWED]["score"]  # downranked
        assert body["degraded"] == []
    finally:
        client.delete(keys.integrity_posts, keys.integrity_accounts)
