"""The Stories tray through the real HTTP app on real Valkey: followed accounts with unseen live
stories, ranked by closeness, recency and unseen count; a story expires at created + 24 h to the
millisecond, also when that moment falls while the request runs; seen state per story; the feed's
privacy filters (blocked either way, muted, private and not approved: absent, nothing says why, and
the property over generated worlds against the independent oracle); stories arriving through the
event stream; Redis down a degraded empty tray, never an error."""

from __future__ import annotations

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candidate_gen import stories
from candidate_gen.fanout import FanoutWorker
from candidate_gen.stories import StoryChange
from candidate_gen.stream_fanout import FanoutStreamConsumer
from data.columns import STORY_TTL_MS
from data.redis_server import EmbeddedRedis
from data.stream.said import story_event
from data.stream.valkey_stream import ValkeyStream
from serving.app import RankingApp, service_redis
from serving.clock import Clock
from serving.service import TrayItem, TrayResponse
from tests.candidates.helpers import HOUR, T0
from tests.candidates.privacy_oracle import N_USERS, pair, to_events, user_ids
from tests.serving.helpers import no_features, serving_config, write_world
from tests.serving.test_service_http import no_registry

NOW = T0 + 30 * HOUR
VIEWER = 1
FOLLOWED, CLOSE, STRANGER, PRIVATE, PRIVATE_FOLLOWED, BLOCKS_VIEWER, BLOCKED, MUTED = 2, 3, 4, 5, 6, 7, 8, 9


class SteppedClock(Clock):
    """A frozen clock a test moves; `then`: the times the next calls answer after this one (one
    each), for a clock that passes while a request runs."""

    def __init__(self, now_ms: int):
        super().__init__(now_ms)
        self.now, self.then = now_ms, []

    def now_ms(self) -> int:
        now = self.now
        if self.then:
            self.now = self.then.pop(0)
        return now


def tray_app(client, cfg, clock) -> RankingApp:
    app = RankingApp.build(cfg, candidates_client=client, hydrator=no_features(), models=no_registry(cfg),
                           clock=clock)
    app.warm = True
    return app


@pytest.fixture
def world(redis_server):
    """Viewer 1 follows 2, 3 (its closest), 6 (private, approved), 7 (who blocked the viewer), 8 (whom
    the viewer blocked) and 9 (muted); 5 is private and did not approve, 4 a stranger. Each has one
    story 2 h old, and 2 a second one 1 h old."""
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config()
    keys = cfg.candidates.keys
    users = [(T0 - 100 * HOUR, "user", u, 0, int(u in (PRIVATE, PRIVATE_FOLLOWED))) for u in range(1, 10)]
    graph = [(T0 - 50 * HOUR, "follow", VIEWER, a, 0) for a in (FOLLOWED, CLOSE, PRIVATE, PRIVATE_FOLLOWED,
                                                               BLOCKS_VIEWER, BLOCKED, MUTED)]
    graph += [(T0 - 49 * HOUR, "approve", VIEWER, PRIVATE_FOLLOWED, 0),
              (T0 - 48 * HOUR, "block", BLOCKS_VIEWER, VIEWER, 0),
              (T0 - 48 * HOUR, "block", VIEWER, BLOCKED, 0),
              (T0 - 48 * HOUR, "mute", VIEWER, MUTED, 0)]
    write_world(client, cfg, users + graph)
    stories.apply(client, keys, [StoryChange(100 * a, a, NOW - 2 * HOUR) for a in range(2, 10)]
                  + [StoryChange(201, FOLLOWED, NOW - HOUR)])
    client.zadd(keys.top_affinity(VIEWER), {CLOSE: 40.0, FOLLOWED: 0.5})
    yield client, cfg
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


def test_the_tray_holds_followed_accounts_with_unseen_stories_the_viewer_may_see_closest_first(world, http_for):
    client, cfg = world
    http = http_for(tray_app(client, cfg, SteppedClock(NOW)))
    r = http.post("/v1/stories/tray", json={"viewer_id": VIEWER})
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"]
    assert [i["author_id"] for i in items] == [CLOSE, FOLLOWED, PRIVATE_FOLLOWED]
    assert items[1]["unseen"] == 2 and [s["story_id"] for s in items[1]["stories"]] == [100 * FOLLOWED, 201]
    assert items[1]["latest_at_ms"] == NOW - HOUR and items[0]["stories"] == [
        {"story_id": 100 * CLOSE, "created_at_ms": NOW - 2 * HOUR}]
    assert [i["position"] for i in items] == [0, 1, 2] and body["served_at_ms"] == NOW
    assert body["degraded"] == []
    # nothing says who was left out, or why
    assert set(body) == set(TrayResponse.model_fields) and set(items[0]) == set(TrayItem.model_fields)
    assert "block" not in r.text and "mute" not in r.text and "private" not in r.text
    # the blocker and the blocked alike: 7 follows nobody here, 8 does not see 1 (its blocker)
    write_world(client, cfg, [(NOW - HOUR, "follow", BLOCKED, VIEWER, 0)])
    stories.apply(client, cfg.candidates.keys, [StoryChange(100, VIEWER, NOW - HOUR)])
    assert http.post("/v1/stories/tray", json={"viewer_id": BLOCKED}).json()["items"] == []
    # the limit
    assert len(http.post("/v1/stories/tray", json={"viewer_id": VIEWER, "limit": 1}).json()["items"]) == 1
    for bad, reason in (({"viewer_id": "1"}, "valid integer"), ({"viewer_id": 1, "limit": 0}, "greater than")):
        r = http.post("/v1/stories/tray", json=bad)
        assert r.status_code == 400 and reason in r.text


def test_recency_and_unseen_count_rank_accounts_of_equal_closeness(world, http_for):
    client, cfg = world
    client.delete(cfg.candidates.keys.top_affinity(VIEWER))
    http = http_for(tray_app(client, cfg, SteppedClock(NOW)))
    # 2 has a story an hour newer than the others' (and two unseen): first; the rest tie, by id
    assert [i["author_id"] for i in http.post("/v1/stories/tray", json={"viewer_id": VIEWER}).json()["items"]] == [
        FOLLOWED, CLOSE, PRIVATE_FOLLOWED]
    stories.apply(client, cfg.candidates.keys, [StoryChange(300 + k, PRIVATE_FOLLOWED, NOW - 2 * HOUR)
                                                for k in range(5)])
    order = [i["author_id"] for i in http.post("/v1/stories/tray", json={"viewer_id": VIEWER}).json()["items"]]
    assert order.index(PRIVATE_FOLLOWED) < order.index(CLOSE)  # as old, more unseen


def test_a_story_is_served_until_exactly_24_hours_after_it_was_posted(world, http_for):
    client, cfg = world
    keys = cfg.candidates.keys
    client.delete(keys.stories(FOLLOWED))
    created = NOW - STORY_TTL_MS + 2
    stories.apply(client, keys, [StoryChange(1, FOLLOWED, created), StoryChange(2, FOLLOWED, NOW + 1)])  # 2: future
    clock = SteppedClock(NOW)
    app = tray_app(client, cfg, clock)
    http = http_for(app)

    def served(now_ms: int, later: list[int] | None = None) -> set[int]:
        clock.now, clock.then = now_ms, list(later or [])
        items = http.post("/v1/stories/tray", json={"viewer_id": VIEWER}).json()["items"]
        return {s["story_id"] for i in items if i["author_id"] == FOLLOWED for s in i["stories"]}

    assert served(NOW) == {1}  # 2 is not posted yet
    assert served(NOW + 1) == {1, 2}  # 1's last live millisecond: created + 24 h - 1
    assert served(NOW + 2) == {2}  # created + 24 h: gone
    # read at 1's last live millisecond, answered a millisecond later: 1 is not served
    assert served(NOW + 1, later=[NOW + 2]) == {2}
    assert http.post("/v1/stories/tray", json={"viewer_id": VIEWER}).json()["served_at_ms"] == NOW + 2
    clock.now, clock.then = NOW + 1, [NOW + 2]  # counted for the metrics, never said in the answer
    assert app.story_tray.tray(VIEWER, 30).removed["expired_at_answer"] == 1
    # once every story of an account has expired, the account leaves the tray
    assert served(NOW + 1 + STORY_TTL_MS) == set()
    assert FOLLOWED not in {i["author_id"] for i in http.post("/v1/stories/tray", json={"viewer_id": VIEWER}).json()[
        "items"]}


def test_seen_stories_leave_the_tray_one_by_one(world, http_for):
    client, cfg = world
    http = http_for(tray_app(client, cfg, SteppedClock(NOW)))
    r = http.post("/v1/stories/seen", json={"viewer_id": VIEWER,
                                            "story_ids": [100 * FOLLOWED, 100 * CLOSE, 100 * CLOSE]})
    assert r.status_code == 200 and r.json() == {"recorded": 2, "error": None}
    items = http.post("/v1/stories/tray", json={"viewer_id": VIEWER}).json()["items"]
    assert [i["author_id"] for i in items] == [FOLLOWED, PRIVATE_FOLLOWED]  # 3 all seen: gone
    assert items[0]["unseen"] == 1 and items[0]["stories"][0]["story_id"] == 201
    # seen by this viewer only; the set expires, with the stories it names, within a day
    write_world(client, cfg, [(NOW - HOUR, "follow", STRANGER, CLOSE, 0)])
    assert [i["author_id"] for i in http.post("/v1/stories/tray", json={"viewer_id": STRANGER}).json()["items"]] == [
        CLOSE]
    assert 0 < client.pttl(cfg.candidates.keys.stories_seen(VIEWER)) <= STORY_TTL_MS
    assert http.post("/v1/stories/seen", json={"viewer_id": VIEWER, "story_ids": []}).status_code == 400


def test_stories_from_the_event_stream_reach_the_tray_and_deletions_leave_it(world, http_for, tmp_path):
    client, cfg = world
    keys = cfg.candidates.keys
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        stream = ValkeyStream.connect(server.url, partitions=2)
        consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg.candidates))
        stream.append([story_event(500, FOLLOWED, NOW - 10), story_event(501, FOLLOWED, NOW - 5),
                       story_event(500, FOLLOWED, NOW - 10, deleted_ms=NOW - 1),
                       story_event(502, STRANGER, NOW - 5)])
        polled = consumer.poll(block_ms=0)
        assert polled.stories == 4 and polled.reconciles and not polled.dead_lettered
        consumer.close()
    assert 0 < client.pttl(keys.stories(FOLLOWED)) <= STORY_TTL_MS
    http = http_for(tray_app(client, cfg, SteppedClock(NOW)))
    items = {i["author_id"]: i for i in http.post("/v1/stories/tray", json={"viewer_id": VIEWER}).json()["items"]}
    assert [s["story_id"] for s in items[FOLLOWED]["stories"]] == [100 * FOLLOWED, 201, 501]  # 500: deleted
    assert STRANGER not in items


def test_redis_down_is_a_degraded_empty_tray_and_a_503_for_seen(world, http_for):
    client, cfg = world
    dead = service_redis("redis://127.0.0.1:1", 0.2)
    http = http_for(tray_app(dead, cfg, SteppedClock(NOW)))
    r = http.post("/v1/stories/tray", json={"viewer_id": VIEWER})
    assert r.status_code == 200 and r.json()["items"] == [] and r.json()["degraded"] == ["stories"]
    r = http.post("/v1/stories/seen", json={"viewer_id": VIEWER, "story_ids": [1]})
    assert r.status_code == 503 and "retry" in r.json()["error"]


@pytest.fixture
def privacy_trays(redis_server, http_for):
    cfg = serving_config()
    client = redis.Redis.from_url(redis_server.url)
    http = http_for(tray_app(client, cfg, SteppedClock(NOW)))
    yield client, cfg, http
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


# Graph changes only (a tray is about accounts), follows and approvals the most common: a world
# with few active follows would leave every tray empty and the property toothless.
graph_action = st.one_of(
    st.tuples(st.sampled_from(["follow"] * 4 + ["approve"] * 2 + ["unfollow", "block", "unblock", "mute", "unmute"]),
              pair),
    st.tuples(st.just("user"), st.tuples(user_ids, st.booleans())),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(private=st.sets(user_ids, max_size=4), actions=st.lists(graph_action, min_size=5, max_size=60))
def test_a_tray_never_holds_an_account_the_viewer_may_not_see(privacy_trays, private, actions):
    """Generated worlds (follows, requests, approvals, privacy changes, blocks, mutes in any order),
    every account with a live story: each viewer's tray holds exactly the accounts the independent
    oracle lets it see among those it follows, never another."""
    client, cfg, http = privacy_trays
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])
    rows, oracle = to_events(private, actions)
    write_world(client, cfg, rows)
    stories.apply(client, cfg.candidates.keys, [StoryChange(u, u, NOW - HOUR) for u in range(1, N_USERS + 1)])
    for viewer in range(1, N_USERS + 1):
        r = http.post("/v1/stories/tray", json={"viewer_id": viewer, "limit": 200})
        assert r.status_code == 200 and r.json()["degraded"] == [], r.text
        got = {i["author_id"] for i in r.json()["items"]}
        allowed = {a for a in range(1, N_USERS + 1) if a != viewer and (viewer, a) in oracle.active
                   and not {(viewer, a), (a, viewer)} & oracle.blocks and (viewer, a) not in oracle.mutes}
        assert got == allowed, (viewer, got - allowed, allowed - got)
