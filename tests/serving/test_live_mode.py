"""Live mode against the real HTTP app: simulated users open Home and Explore, act as the truth
model says, their engagements go through POST /v1/events onto a durable stream, and the posts they
publish reach followers' Home through the stream and the fan-out consumer; their stories reach
the Stories tray the same way, and the tray is checked against the player's own record."""

from __future__ import annotations

import json
from datetime import date
from functools import partial

import numpy as np
import pytest
import redis

from candidate_gen.fanout import FanoutWorker
from candidate_gen.stream_fanout import FanoutStreamConsumer
from data.columns import STORY_TTL_MS
from data.days import HOUR_MS, MINUTE_MS
from data.redis_server import EmbeddedRedis
from data.stream.valkey_stream import ValkeyStream
from data.vocabulary import load_vocabulary
from data.world.content import GENERIC_TAGS, hashtag_vocabulary
from data.world.live import LiveConfig, LivePlayer
from data.world.live_posts import LivePosts
from data.world.regret import PUSH_WEIGHT, Regret
from data.world.truth import PairState, PostLatents, TruthModel, UserLatents
from serving.config import EventsConfig
from serving.event_intake import EventIntake
from tests.serving.helpers import build_app, explore_sets, serving_config, social_world, write_world
from tests.serving.test_service_http import NOW, no_registry

pytestmark = pytest.mark.integration

TOPICS = 4


def truth_of(rows: list[tuple]) -> TruthModel:
    """A hidden truth for the synthetic world: every user and post with latents (engaging enough
    that a few sessions act)."""
    rng = np.random.default_rng(3)
    n_users = max(r[2] for r in rows if r[1] == "user")
    posts = [(r[2], r[3], r[4]) for r in rows if r[1] == "post"]
    n_posts = max(p for p, _, _ in posts)
    users = UserLatents(interests=rng.dirichlet(np.ones(TOPICS), n_users + 1).astype(np.float32),
                        propensity=np.full(n_users + 1, 2.0, np.float32), negativity=np.zeros(n_users + 1, np.float32))
    author, created = np.zeros(n_posts + 1, np.int64), np.zeros(n_posts + 1, np.int64)
    for p, a, ts in posts:
        author[p], created[p] = a, ts
    latents = PostLatents(author=author, created_ms=created, media=np.zeros(n_posts + 1, np.int64),
                          mix=rng.dirichlet(np.ones(TOPICS), n_posts + 1).astype(np.float32),
                          quality=np.ones(n_posts + 1, np.float32))
    return TruthModel(users, latents, date(2026, 9, 1), 1, pair_states={0: PairState.empty(), 1: PairState.empty()})


class SteppedClock:
    """A simulated clock that moves only when the player waits for it."""

    speed = 1.0

    def __init__(self, now_ms: int):
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture
def live(redis_server, tmp_path, http_for):
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config(home={"out_of_network_share": 0.3})
    rows = social_world()
    write_world(client, cfg, rows)
    explore_sets(client, cfg, [(r[2], r[3]) for r in rows if r[1] == "post"])
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        app = build_app(client, cfg, no_registry(cfg), now_ms=NOW)
        connect = partial(ValkeyStream.connect, server.url, 2, timeout_s=5.0)
        app.intake = EventIntake(connect, load_vocabulary(), app.clock, EventsConfig())
        yield client, cfg, rows, app, http_for(app), connect()
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])


def test_simulated_users_use_the_service_and_every_event_is_taken(live):
    client, cfg, rows, app, http, stream = live
    clock = SteppedClock(NOW)
    config = LiveConfig(sessions_per_step=6, posts_per_step=3.0, seed=11)
    player = LivePlayer(truth_of(rows), http, stream, clock, config, viewers=np.arange(1, 13))

    report = player.run(NOW + 4 * config.step_ms, wait=clock.wait)

    summary = report.summary()
    assert report.steps == 4 and report.sessions == 24 and report.failed_requests == 0
    assert sum(report.sessions_by_surface.values()) == 24
    assert report.engagements_sent > 0 and report.events_accepted == report.engagements_sent + report.blocks_sent
    assert report.events_rejected == 0
    assert summary["engagements_per_session"] > 0 and summary["truth_value_per_session"] > 0
    lines = [json.loads(e.line) for p in range(stream.partitions) for e in stream.after(p, "0-0", 10_000)]
    logged = [x for x in lines if "event_id" in x]
    assert len(logged) == report.engagements_sent
    assert {x["surface"] for x in logged} <= {"home", "explore"}
    published = [x for x in lines if "post_id" in x and "created_at" in x]
    assert len(published) == report.posts_published > 0
    # tagged from their topic, so that trending's per-hashtag sets have live posts to rank
    vocabulary = hashtag_vocabulary(TOPICS)
    for post in published:
        topic = int(player.truth.posts.mix[post["post_id"]].argmax())
        assert post["hashtags"] and set(post["hashtags"]) <= set(vocabulary[topic]) | set(GENERIC_TAGS)

    # the published posts reach a follower's Home through the stream and the fan-out consumer
    consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg.candidates, name="live"))
    polled = consumer.poll()
    assert not polled.dead_lettered and polled.applied == report.posts_published + report.follows + polled.stories
    assert polled.stories == report.stories_posted + report.stories_deleted > 0
    newest = published[-1]
    follower = next(r[2] for r in rows if r[1] == "follow" and r[3] == newest["author_id"])
    app.clock = clock  # the service reads the feed at the live clock's now
    home = http.post("/v1/feed/home", json={"viewer_id": follower, "limit": 100}).json()
    assert newest["post_id"] in {i["post_id"] for i in home["items"]}


def test_authors_post_stories_viewers_watch_them_and_none_is_served_expired_or_deleted(live):
    """Every session opens the tray first; the fan-out consumer polls between steps (an hour each).
    The trays serve the stories the authors posted, never one the player's own record says had
    expired or been deleted; the ones watched leave the tray; a story is served until its last live
    millisecond, and a day on, the trays serve the newest while the older ones are gone."""
    client, cfg, rows, app, http, stream = live
    clock = SteppedClock(NOW)
    app.story_tray.clock = clock  # the service checks the stories at the live clock's now
    consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg.candidates, name="live"))
    config = LiveConfig(sessions_per_step=6, posts_per_step=0.0, stories_per_step=6.0, story_delete_share=0.5,
                        tray_share=1.0, step_ms=HOUR_MS, seed=3)
    player = LivePlayer(truth_of(rows), http, stream, clock, config, viewers=np.arange(1, 13))

    def poll(_: LivePlayer) -> None:
        assert not consumer.poll(block_ms=0).dead_lettered

    report = player.run(NOW + 4 * HOUR_MS, on_step=poll, wait=clock.wait)

    assert report.trays == 24 and len(report.tray_ms) == 24 and report.failed_requests == 0
    assert report.stories_posted > 0 and report.stories_deleted > 0 and report.stories_watched > 0
    assert report.stories_served > 0 and report.unknown_stories_served == 0  # the world has none of its own
    assert report.expired_stories_served == 0 and report.deleted_stories_served == 0
    summary = report.summary()
    assert summary["trays"] == 24 and summary["stories_served"] == report.stories_served
    assert summary["tray_p99_ms"] >= summary["tray_p50_ms"]
    # the stories watched are the viewers' seen ones, and leave their trays
    seen = {v: {int(s) for s in client.smembers(cfg.candidates.keys.stories_seen(v))} for v in range(1, 13)}
    assert sum(len(s) for s in seen.values()) == report.stories_watched

    def tray(viewer: int) -> set[int]:
        items = http.post("/v1/stories/tray", json={"viewer_id": viewer}).json()["items"]
        return {s["story_id"] for i in items for s in i["stories"]}

    for viewer, watched in seen.items():
        assert not tray(viewer) & watched
    # the newest story: served until its last live millisecond, then never
    newest = max(s for s, k in player.stories.known.items() if k.posted and k.deleted_step is None)
    story = player.stories.known[newest]
    follower = next(r[2] for r in rows if r[1] == "follow" and r[3] == story.author)
    clock.now = story.created_ms + STORY_TTL_MS - 1
    assert newest in tray(follower)
    clock.now += 1
    assert newest not in tray(follower)
    # a day on (the newest half an hour from expiring, the older ones gone): served, never expired
    served = report.stories_served
    clock.now = NOW + 3 * HOUR_MS + STORY_TTL_MS - 30 * MINUTE_MS
    player.run(clock.now + HOUR_MS, on_step=poll, wait=clock.wait)
    assert report.steps == 5 and report.stories_served > served
    assert report.expired_stories_served == 0 and report.deleted_stories_served == 0


def test_viewers_push_away_in_the_products_words_and_remember_it(live, tmp_path):
    """Viewers eager to hide: their hides go out as hide, "not interested" or "see fewer", reports
    as reports, some become blocks and mutes (POST /v1/blocks), the service takes every line, the
    fan-out consumer files them into the viewers' fatigue, and the player remembers each push-away
    for the next play."""
    client, cfg, rows, app, http, stream = live
    clock = SteppedClock(NOW)
    truth = truth_of(rows)
    truth.users.negativity[:] = 7.0  # every viewer hides or reports much of what they examine
    kept = tmp_path / "live" / "regret.npz"
    player = LivePlayer(truth, http, stream, clock, LiveConfig(sessions_per_step=6, posts_per_step=0.0, seed=5),
                        viewers=np.arange(1, 13), regret=Regret(kept))

    report = player.run(NOW + 4 * player.config.step_ms, wait=clock.wait)

    assert report.failed_requests == 0 and report.events_rejected == 0 and report.blocks_sent > 0
    assert report.events_accepted == report.engagements_sent + report.blocks_sent
    lines = [json.loads(e.line) for p in range(stream.partitions) for e in stream.after(p, "0-0", 10_000)]
    said = [x for x in lines if x.get("type") in PUSH_WEIGHT]
    assert {x["type"] for x in said} == set(PUSH_WEIGHT)  # hide, not_interested, see_fewer, report
    assert sum(report.negatives) == len(said)
    # later pages show authors pushed away earlier: what regret judges, and what fatigue can prevent
    assert sum(report.pushed_shown) > 0 and 0 < sum(report.repeat_negatives) <= sum(report.negatives)
    assert len([x for x in lines if "blocker_id" in x]) == report.blocks_sent

    polled = FanoutStreamConsumer(stream, FanoutWorker(client, cfg.candidates, name="live")).poll()
    assert polled.push_aways == len(said) and not polled.dead_lettered
    x, now = said[-1], clock.now_ms()
    remembered = Regret(kept).pressure(x["viewer_id"], np.array([x["author_id"]]), now)[0]
    assert remembered > 0
    assert remembered == pytest.approx(player.regret.pressure(x["viewer_id"], np.array([x["author_id"]]), now)[0])


def test_posts_published_live_are_kept_for_the_next_play(tmp_path):
    """A second play reads back the posts the first published, with the same hidden qualities, and
    numbers its own after them: no two posts share an id, and every landed post can be judged."""
    kept = tmp_path / "live" / "posts.npz"
    rows = social_world()
    first = LivePosts(truth_of(rows), kept)
    world_end = first.n
    # this world's post ids are sparse: a template drawn in a hole is skipped, hence the large counts
    published = (first.publish(np.random.default_rng(1), NOW, 300)
                 + first.publish(np.random.default_rng(2), NOW + 1, 300))
    ids = [p for p, _, _ in published]
    assert ids and ids == list(range(world_end + 1, world_end + 1 + len(ids)))

    second = LivePosts(truth_of(rows), kept)
    assert second.n == first.n
    for name in LivePosts.FIELDS:
        np.testing.assert_array_equal(getattr(second.truth.posts, name)[:second.n + 1],
                                      getattr(first.truth.posts, name)[:first.n + 1])
    later = second.publish(np.random.default_rng(3), NOW + 2, 300)
    assert later and min(p for p, _, _ in later) == first.n + 1
    assert LivePosts(truth_of(rows), kept).n == second.n
    assert LivePosts(truth_of(rows)).n == world_end  # without a file: the world's posts only
