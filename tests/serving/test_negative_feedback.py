"""A viewer pushing an author away from the feed, end to end: a "see fewer" through POST /v1/events,
a mute or block through POST /v1/blocks, onto the stream; at the fan-out consumer's next poll the
viewer's next Home page ranks that author's posts lower (see fewer) or holds none of them (mute,
block), the other author's as before."""

from __future__ import annotations

import math
from functools import partial

import pytest
import redis

from candidate_gen.fanout import FanoutWorker
from candidate_gen.fatigue import PushAway, record
from candidate_gen.search.post_text_index import PostText, PostTextIndex
from candidate_gen.stream_fanout import FanoutStreamConsumer
from data.days import iso_ms
from data.redis_server import EmbeddedRedis
from data.stream.valkey_stream import ValkeyStream
from data.vocabulary import load_vocabulary
from serving.config import EventsConfig
from serving.event_intake import EventIntake
from tests.candidates.helpers import HOUR, T0
from tests.serving.helpers import build_app, serving_config, write_world
from tests.serving.test_service_http import no_registry

pytestmark = pytest.mark.integration

NOW = T0 + 10 * HOUR
VIEWER, PUSHED, OTHER = 1, 7, 8


@pytest.fixture
def feed(redis_server, http_for, tmp_path):
    """Viewer 1 follows authors 7 and 8, who posted at the same instants; the service's events go onto
    a stream of the test's own, which a fan-out consumer polls when the test says. Yields
    (http, consumer, page)."""
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config().with_("impressions", enabled=False, record_seen=False)  # the same page twice
    rows = [(T0 - 100 * HOUR, "user", u, 0, 0) for u in (VIEWER, PUSHED, OTHER)]
    rows += [(T0 - 50 * HOUR, "follow", VIEWER, a, 0) for a in (PUSHED, OTHER)]
    rows += [(T0 + k * HOUR, "post", 100 + 10 * a + k, a, T0 + k * HOUR) for a in (PUSHED, OTHER) for k in range(3)]
    write_world(client, cfg, rows)
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as stream_server:
        app = build_app(client, cfg, no_registry(cfg), now_ms=NOW)
        app.intake = EventIntake(partial(ValkeyStream.connect, stream_server.url, 2, timeout_s=2.0),
                                 load_vocabulary(), app.clock, EventsConfig())
        stream = ValkeyStream.connect(stream_server.url, 2)
        consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg.candidates))
        http = http_for(app)

        def page() -> dict[int, tuple[int, float]]:
            r = http.post("/v1/feed/home", json={"viewer_id": VIEWER, "limit": 20})
            assert r.status_code == 200 and "fatigue" not in r.json()["degraded"], r.text  # hydrate: no store here
            return {i["post_id"]: (i["author_id"], i["score"]) for i in r.json()["items"]}

        yield http, consumer, page
        consumer.close()


def test_a_see_fewer_lowers_that_authors_posts_on_the_viewers_next_page(feed):
    http, consumer, page = feed

    def ratios(items: dict[int, tuple[int, float]]) -> list[float]:
        """Each pushed author's post's score over the other author's post of the same age (the
        heuristic's scores age with the clock; the two authors posted at the same instants)."""
        return [items[100 + 10 * PUSHED + k][1] / items[100 + 10 * OTHER + k][1] for k in range(3)]

    before = page()
    assert {a for a, _ in before.values()} == {PUSHED, OTHER}
    assert ratios(before) == pytest.approx([1.0] * 3)
    event = {"event_id": "sf-1", "viewer_id": VIEWER, "post_id": 100 + 10 * PUSHED, "author_id": PUSHED,
             "type": "see_fewer", "ts": iso_ms(NOW - 1000), "surface": "home", "request_id": "r1"}
    r = http.post("/v1/events", json={"events": [event]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert ratios(page()) == pytest.approx([1.0] * 3)  # not applied until the consumer's poll
    assert consumer.poll().push_aways == 1

    after = page()
    assert set(after) == set(before)
    # one fresh "see fewer" (weight 1, 72 h half-life, strength 1): ~exp(-1) of the score
    assert ratios(after) == pytest.approx([math.exp(-0.5 ** (1000 / (72 * HOUR)))] * 3, rel=1e-6)
    assert [p for p, _ in sorted(after.items(), key=lambda kv: -kv[1][1])][-3:] == [172, 171, 170]


def test_a_see_fewer_also_lowers_other_authors_posts_like_the_pushed_away_one(redis_server, http_for, tmp_path):
    """Posts like this: the pushed-away post's hashtags, read from the service's search index, lower
    another author's posts by the share of their hashtags that were pushed away."""
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config().with_("impressions", enabled=False, record_seen=False)
    tags = {170: ["cats", "cute"], 180: ["cats", "cute"], 181: ["cute", "dogs"], 182: ["dogs"]}
    rows = [(T0 - 100 * HOUR, "user", u, 0, 0) for u in (VIEWER, PUSHED, OTHER)]
    rows += [(T0 - 50 * HOUR, "follow", VIEWER, OTHER, 0)]
    rows += [(T0 + k * HOUR, "post", 180 + k, OTHER, T0 + k * HOUR) for k in range(3)]
    write_world(client, cfg, rows)
    with PostTextIndex(tmp_path / "posts.sqlite") as index:
        index.upsert([PostText(post, PUSHED if post < 180 else OTHER, T0, t, None) for post, t in tags.items()])
    app = build_app(client, cfg, no_registry(cfg), now_ms=NOW, search_index=tmp_path / "posts.sqlite")
    http = http_for(app)

    def scores() -> dict[int, float]:
        r = http.post("/v1/feed/home", json={"viewer_id": VIEWER, "limit": 20})
        assert r.status_code == 200 and "fatigue" not in r.json()["degraded"], r.text
        return {i["post_id"]: i["score"] for i in r.json()["items"]}

    before = scores()
    record(client, cfg.candidates.keys, [PushAway(VIEWER, PUSHED, 170, "see_fewer", NOW)], cfg.candidates.fatigue)
    after = scores()
    kept = {p: after[p] / before[p] for p in before}
    w = cfg.candidates.fatigue.hashtag_weight
    assert kept == pytest.approx({180: math.exp(-w), 181: math.exp(-w / 2), 182: 1.0})


def test_a_mute_or_block_from_the_feed_empties_the_page_of_that_author_at_the_next_poll(feed):
    http, consumer, page = feed
    assert {a for a, _ in page().values()} == {PUSHED, OTHER}
    mute = {"blocker_id": VIEWER, "blocked_id": PUSHED, "action": "mute", "ts": iso_ms(NOW - 1000)}
    bad = {"blocker_id": VIEWER, "blocked_id": PUSHED, "action": "poke", "ts": iso_ms(NOW - 1000)}
    r = http.post("/v1/blocks", json={"changes": [mute, bad]})
    assert r.status_code == 422, r.text
    assert r.json()["accepted"] == 1 and [(x["index"], x["reason"]) for x in r.json()["rejected"]] == [
        (1, "bad_enum:action")]
    again = http.post("/v1/blocks", json={"changes": [mute]})  # a client retrying: nothing twice
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert {a for a, _ in page().values()} == {PUSHED, OTHER}  # not applied until the consumer's poll
    assert consumer.poll().applied == 1
    assert {a for a, _ in page().values()} == {OTHER}

    unmute = {**mute, "action": "unmute", "ts": iso_ms(NOW - 500)}
    block = {"blocker_id": OTHER, "blocked_id": VIEWER, "action": "block", "ts": iso_ms(NOW - 400)}
    assert http.post("/v1/blocks", json={"changes": [unmute, block]}).json()["accepted"] == 2
    consumer.poll()
    assert {a for a, _ in page().values()} == {PUSHED}  # blocked by 8: the viewer no longer sees 8
