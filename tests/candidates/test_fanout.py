"""The fan-out worker and the Home read path against a real Valkey: fan-out, celebrity pull,
graph changes, privacy, deletions, idempotent replay, unknown ids."""

from __future__ import annotations

import pytest
import redis

from candidate_gen import events as ev
from candidate_gen.fanout import FanoutWorker, StateLostError
from candidate_gen.filters import default_chain
from candidate_gen.home import HomeCandidateReader
from candidate_gen.rebuild import build_feeds, set_celebrities
from candidate_gen.records import Candidate
from tests.candidates.helpers import HOUR, T0, dump, fresh_config


@pytest.fixture
def client(redis_server):
    return redis.Redis.from_url(redis_server.url)


def accounts(*ids, private=()):
    return [(T0 - 10 * HOUR, "user", u, 0, int(u in private)) for u in ids]


def setup(client, cfg, events, viewers=(1, 2, 3, 4, 5, 6)):
    """Apply events with every viewer's cache built first (active viewers)."""
    worker = FanoutWorker(client, cfg)
    worker.consume(ev.frame(accounts(*range(1, 11), private=(9,))), None)
    build_feeds(client, cfg, viewers, T0)
    worker.consume(ev.frame(events), None)
    return worker


def home_posts(client, cfg, viewer, now=T0 + 10 * HOUR, filtered=True):
    read = HomeCandidateReader(client, cfg).read(viewer, now, 1000)
    cands = read.candidates
    if filtered:
        cands = default_chain(client, cfg, seen=False).run(viewer, cands, now).kept
    return [c.post_id for c in cands]


def test_post_reaches_every_follower_newest_first(client):
    cfg = fresh_config()
    setup(client, cfg, [
        (T0, "follow", 1, 7, 0), (T0, "follow", 2, 7, 0),
        (T0 + 1, "post", 100, 7, T0 + 1), (T0 + 2, "post", 101, 7, T0 + 2),
    ])
    assert home_posts(client, cfg, 1) == [101, 100]
    assert home_posts(client, cfg, 2) == [101, 100]
    assert home_posts(client, cfg, 3) == []


def test_cache_is_capped_oldest_trimmed(client):
    cfg = fresh_config(cap=5)
    posts = [(T0 + i, "post", 100 + i, 7, T0 + i) for i in range(12)]
    setup(client, cfg, [(T0 - 1, "follow", 1, 7, 0), *posts])
    assert client.zcard(cfg.keys.feed(1)) == 5 + 1  # + the build sentinel
    assert home_posts(client, cfg, 1) == [111, 110, 109, 108, 107]


def test_celebrity_posts_cost_one_write_and_are_pulled_at_read(client):
    cfg = fresh_config(celebrity_followers=3)
    worker = setup(client, cfg, [(T0, "follow", v, 8, 0) for v in (1, 2, 3, 4)] + [(T0, "follow", 1, 7, 0)])
    set_celebrities(client, cfg, worker.users)
    worker = FanoutWorker(client, cfg)  # sees the celebrity set
    stats = worker.consume(ev.frame([(T0 + 5, "post", 200, 8, T0 + 5), (T0 + 6, "post", 201, 7, T0 + 6)]), None)
    assert stats.celebrity_posts == 1 and stats.celebrity_post_commands == 3  # add + two trims
    assert stats.fanout_targets == 1  # only author 7's single follower got a write
    assert not client.zscore(cfg.keys.feed(2), b"200:8")
    assert home_posts(client, cfg, 1) == [201, 200]
    assert home_posts(client, cfg, 2) == [200]
    read = HomeCandidateReader(client, cfg).read(1, T0 + HOUR)
    assert {c.post_id: c.source for c in read.candidates} == {201: "in_network", 200: "celebrity"}


def test_follow_backfills_and_unfollow_removes(client):
    cfg = fresh_config()
    setup(client, cfg, [(T0, "post", 100, 7, T0), (T0 + 1, "post", 101, 7, T0 + 1)])
    assert home_posts(client, cfg, 1) == []
    FanoutWorker(client, cfg).consume(ev.frame([(T0 + 2, "follow", 1, 7, 0)]), None)
    assert home_posts(client, cfg, 1) == [101, 100]
    FanoutWorker(client, cfg).consume(ev.frame([(T0 + 3, "unfollow", 1, 7, 0)]), None)
    assert home_posts(client, cfg, 1, filtered=False) == []


def test_private_account_reaches_approved_followers_only(client):
    cfg = fresh_config()
    setup(client, cfg, [
        (T0, "follow", 1, 9, 0), (T0, "follow", 2, 9, 0), (T0 + 1, "approve", 1, 9, 0),
        (T0 + 2, "post", 300, 9, T0 + 2), (T0 + 3, "approve", 3, 9, 0),  # approve without request
    ])
    assert home_posts(client, cfg, 1) == [300]
    assert home_posts(client, cfg, 2, filtered=False) == []  # pending: nothing fanned out
    assert home_posts(client, cfg, 3, filtered=False) == []


def test_blocks_mutes_and_deletions_are_filtered_at_read(client):
    cfg = fresh_config()
    setup(client, cfg, [
        (T0, "follow", 1, 7, 0), (T0, "follow", 1, 6, 0), (T0, "follow", 1, 5, 0),
        (T0 + 1, "post", 100, 7, T0 + 1), (T0 + 1, "post", 101, 6, T0 + 1), (T0 + 1, "post", 102, 5, T0 + 1),
        (T0 + 2, "block", 6, 1, 0),  # the author blocks the viewer
        (T0 + 2, "mute", 1, 5, 0),
        (T0 + 3, "delete", 100, 7, T0 + 1),
    ])
    # a deletion is a tombstone, not a write per follower: still cached, removed at read
    assert sorted(home_posts(client, cfg, 1, filtered=False)) == [100, 101, 102]
    assert not client.zscore(cfg.keys.author_posts(7), b"100:7")
    chain = default_chain(client, cfg, seen=False)
    read = HomeCandidateReader(client, cfg).read(1, T0 + HOUR).candidates
    result = chain.run(1, read, T0 + HOUR)
    assert result.kept == [] and result.counts == {"deleted": 1, "blocked": 1, "muted": 1}
    assert result.total == len(read)


def test_missing_cache_is_built_at_read(client):
    cfg = fresh_config()
    setup(client, cfg, [(T0, "follow", 9, 7, 0), (T0 + 1, "post", 100, 7, T0 + 1)], viewers=())
    assert not client.exists(cfg.keys.feed(9))  # fan-out writes only existing caches
    read = HomeCandidateReader(client, cfg).read(9, T0 + HOUR)
    assert read.built and [c.post_id for c in read.candidates] == [100]
    assert client.ttl(cfg.keys.feed(9)) > 0


def test_replaying_the_same_events_gives_the_same_state(client):
    cfg = fresh_config()
    events = [
        (T0, "follow", 1, 7, 0), (T0, "follow", 2, 9, 0), (T0 + 1, "approve", 2, 9, 0),
        (T0 + 2, "post", 100, 7, T0 + 2), (T0 + 3, "post", 101, 9, T0 + 3), (T0 + 4, "unfollow", 1, 7, 0),
        (T0 + 5, "follow", 3, 7, 0), (T0 + 6, "delete", 101, 9, T0 + 3), (T0 + 7, "block", 3, 7, 0),
    ]
    setup(client, cfg, events)
    once = dump(client, cfg)
    FanoutWorker(client, cfg).consume(ev.frame(events), None)
    assert dump(client, cfg) == once


def test_unknown_users_are_counted_and_skipped(client):
    cfg = fresh_config()
    worker = setup(client, cfg, [])
    stats = worker.consume(ev.frame([
        (T0, "follow", 1, 999, 0), (T0, "block", 998, 1, 0), (T0 + 1, "post", 500, 997, T0 + 1),
        (T0 + 1, "post", 501, 7, T0 - 30 * 24 * HOUR), (T0 + 2, "follow", 1, 7, 0),
    ]), None)
    assert stats.skipped == {"unknown_user": 2, "unknown_author": 1, "older_than_max_age": 1}
    assert stats.applied == 1 and stats.reconciles


def test_a_day_without_events_moves_the_checkpoint_on(client):
    """An export whose posts all landed on its first day (the Open Bandit sample): the empty days
    after it are applied too, so the next day's run does not report one missing."""
    cfg = fresh_config()
    worker = setup(client, cfg, [(T0 + 1, "post", 100, 7, T0 + 1)])
    client.hset(cfg.keys.meta, "built_through", "2026-09-30")  # as candidates/rebuild leaves it
    worker.consume(ev.frame([(T0 + 2, "post", 101, 7, T0 + 2)]), "2026-10-01")
    assert worker.checkpoint_day() == "2026-10-01"
    empty = ev.frame([])
    assert worker.consume(empty, "2026-10-02").events == 0
    assert worker.checkpoint_day() == "2026-10-02"
    worker.consume(empty, "2026-10-01")  # a replay of an earlier day never moves it back
    assert worker.checkpoint_day() == "2026-10-02"


def test_a_lake_day_needs_built_state(client, tmp_path):
    cfg = fresh_config()
    with pytest.raises(StateLostError, match="rebuild"):
        FanoutWorker(client, cfg).run_day(tmp_path, "2026-10-02")


def test_filters_fail_closed_on_privacy_when_redis_is_unreachable():
    cfg = fresh_config()
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    pool = [Candidate(100, 7, T0, "trending"), Candidate(101, 1, T0, "trending")]
    result = default_chain(dead, cfg).run(1, pool, T0 + HOUR)
    assert result.kept == []
    assert result.counts == {"own_post": 1, "deleted_unavailable": 1}
    assert {"deleted", "blocked", "private"} <= set(result.degraded)
