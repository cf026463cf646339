"""The Explore builders on a small hand-built lake, then the trending, popular and social sources
reading what they wrote from a real embedded Valkey."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.explore.social import build_social, record_engagement
from candidate_gen.explore.trending import build_trending
from candidate_gen.reads import StepReader
from candidate_gen.records import member
from candidate_gen.sources.base import ERROR, SourceRequest, fetch, run_sources
from candidate_gen.sources.popular_source import PopularSource
from candidate_gen.sources.social_source import SocialSource
from candidate_gen.sources.trending_source import TrendingSource
from data.redis_server import EmbeddedRedis
from features.streaming import spec

DAY, PREV, NEXT = "2026-10-05", "2026-10-04", "2026-10-06"
END = datetime(2026, 10, 6, tzinfo=UTC)
END_MS = int(END.timestamp() * 1000)
NOW_MS = END_MS + 60_000  # a request a minute after the build's "as of"
VIEWER = 1

ENGAGEMENTS = pa.schema([("event_id", pa.string()), ("viewer_id", pa.int64()), ("post_id", pa.int64()),
                         ("author_id", pa.int64()), ("type", pa.string()), ("value", pa.float64()),
                         ("ts", pa.timestamp("us", tz="UTC")), ("surface", pa.string()),
                         ("request_id", pa.string())])
POSTS = pa.schema([("post_id", pa.int64()), ("author_id", pa.int64()),
                   ("created_at", pa.timestamp("us", tz="UTC")), ("media_type", pa.string()),
                   ("hashtags", pa.list_(pa.string())), ("caption", pa.string()),
                   ("deleted_at", pa.timestamp("us", tz="UTC"))])
AFFINITY = pa.schema([("viewer_id", pa.int64()), ("author_id", pa.int64()),
                      ("engagement_score_decayed", pa.float32())])


def write(root: Path, rows: list[dict], schema: pa.Schema) -> None:
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "part-0.parquet")
    (root / "_SUCCESS").touch()


def ago(hours: float) -> datetime:
    return END - timedelta(hours=hours)


def post(pid: int, author: int, hours: float, tags: list[str], deleted: float | None = None) -> list[dict]:
    row = {"post_id": pid, "author_id": author, "created_at": ago(hours), "media_type": "photo",
           "hashtags": tags, "caption": "", "deleted_at": None}
    return [row] + ([{**row, "deleted_at": ago(deleted)}] if deleted is not None else [])


def likes(pid: int, author: int, viewers: range, hours: float, kind: str = "like") -> list[dict]:
    return [{"event_id": f"{pid}-{v}-{kind}-{hours}", "viewer_id": v, "post_id": pid, "author_id": author,
             "type": kind, "value": 20_000.0 if kind == "dwell" else None, "ts": ago(hours),
             "surface": "explore", "request_id": "r"} for v in viewers]


def one(viewer: int, pid: int, author: int, hours: float, kind: str = "like") -> dict:
    return likes(pid, author, range(viewer, viewer + 1), hours, kind)[0]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    """Posts 100, 101, 103, 102 (of authors 10-13) trend in that order, 102 being popular over two
    days but slow now; 104 is deleted, 105 too old, 106 only takes off on D+1. Viewer 1 follows 2
    and 3, has affinity with 4 (not followed) and 2; 2, 3 and 4 engaged posts the social source
    should rank; 107 is by followee 2, 108 by the viewer."""
    root = tmp_path_factory.mktemp("explore") / "lake"
    write(root / "posts" / f"dt={PREV}", [
        *post(100, 10, 20, ["Food", "travel"]), *post(101, 11, 20, ["food"]), *post(102, 12, 20, ["travel"]),
        *post(103, 13, 20, ["cats"]), *post(104, 14, 20, ["food"]), *post(107, 2, 20, ["food"]),
        *post(108, VIEWER, 20, ["food"]),
    ], POSTS)
    write(root / "posts" / f"dt={DAY}", [
        *post(104, 14, 20, ["food"], deleted=2), *post(105, 15, 9 * 24, ["food"]),
        *post(106, 16, 3, ["food", "new"]),
    ], POSTS)
    write(root / "posts" / f"dt={NEXT}", [], POSTS)
    prev_rows = [*likes(105, 15, range(1000, 1100), 30)]
    day_rows = [
        *likes(100, 10, range(1000, 1040), 0.5),  # 40 likes in the last hour
        *likes(101, 11, range(1000, 1030), 0.5),
        *likes(102, 12, range(1000, 1030), 10),  # 30 likes, but 10 hours ago
        *likes(103, 13, range(1000, 1004), 0.5),
        *likes(104, 14, range(1000, 1100), 0.5),  # deleted 2 hours before the end
        *likes(105, 15, range(1000, 1100), 0.5),  # 9 days old
        # the viewer's own interests: travel (3 posts x 2 tags), food once
        one(VIEWER, 102, 12, 2, "save"), one(VIEWER, 100, 10, 2, "comment"), one(VIEWER, 101, 11, 5),
        # what the viewer's close accounts engaged
        one(2, 100, 10, 5), one(2, 102, 12, 1), one(3, 100, 10, 3), one(3, 101, 11, 1),
        one(3, 107, 2, 1), one(3, 108, VIEWER, 1), one(4, 100, 10, 4), one(4, 103, 13, 2, "dwell"),
        one(9, 101, 11, 1),  # 9 is neither followed nor affine
    ]
    next_rows = [*likes(106, 16, range(1000, 1300), 0.5), one(2, 106, 16, -1)]  # landed on D+1
    write(root / "engagements" / f"dt={PREV}", prev_rows, ENGAGEMENTS)
    write(root / "engagements" / f"dt={DAY}", day_rows, ENGAGEMENTS)
    write(root / "engagements" / f"dt={NEXT}", next_rows, ENGAGEMENTS)
    write(root / "features" / "viewer_author" / f"dt={DAY}", [
        {"viewer_id": VIEWER, "author_id": 4, "engagement_score_decayed": 5.0},
        {"viewer_id": VIEWER, "author_id": 2, "engagement_score_decayed": 2.0},
        {"viewer_id": VIEWER, "author_id": 7, "engagement_score_decayed": -1.0},
        {"viewer_id": 2, "author_id": 10, "engagement_score_decayed": 1.0},
    ], AFFINITY)
    return root


@pytest.fixture
def env(redis_server, lake):
    """A client, a config with a unique key prefix, and the day's builds written."""
    client = redis.Redis.from_url(redis_server.url)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    cfg = CandidateConfig.from_dict({
        "feed": {"key_prefix": prefix},
        "trending": {"min_tag_posts": 1, "min_events": 3, "live_prefix": f"{prefix}rt"},
        "sources": {n: {"cap": 300, "timeout_ms": 2000} for n in ("trending", "popular", "social")},
    })
    client.sadd(cfg.keys.following(VIEWER), 2, 3)
    trending = build_trending(lake, DAY, client, cfg)
    social = build_social(lake, DAY, client, cfg)
    yield client, cfg, trending, social
    for key in client.scan_iter(match=cfg.keys.pattern, count=1000):
        client.delete(key)


def ids(candidates) -> list[int]:
    return [c.post_id for c in candidates]


def request(viewer: int = VIEWER) -> SourceRequest:
    return SourceRequest(viewer_id=viewer, now_ms=NOW_MS)


def test_trending_sets_point_in_time_and_ttl(env):
    client, cfg, stats, _ = env
    keys = cfg.keys
    glob = client.zrevrange(keys.trending, 0, -1)
    assert glob == [member(100, 10), member(101, 11), member(103, 13), member(102, 12)]
    assert 0 < client.ttl(keys.trending) <= 48 * 3600
    assert client.zrevrange(keys.trending_tag("food"), 0, -1) == [member(100, 10), member(101, 11)]
    assert client.zrevrange(keys.trending_tag("travel"), 0, -1) == [member(100, 10), member(102, 12)]
    assert client.zrevrange(keys.viewer_tags(VIEWER), 0, -1) == [b"travel", b"food"]
    # 48 h weighted counts: 46, 34, 33, 4.5, then 107 and 108 (one like each); 104 is deleted,
    # 105 too old, 106's likes land on D+1
    assert client.zrevrange(keys.popular, 0, -1) == [member(100, 10), member(102, 12), member(101, 11),
                                                      member(103, 13), member(108, VIEWER), member(107, 2)]
    assert stats["trending_written"] == 4 and stats["viewers_with_tags"] >= 1
    # each live post's hashtags, for the stream's per-hashtag sets
    live = cfg.section("trending")["live_prefix"]
    assert set(client.get(spec.post_tags_key(100, live)).split(b",")) == {b"food", b"travel"}


def test_rebuild_replaces_sets_and_drops_tags_that_stopped_trending(env, lake):
    client, cfg, _, _ = env
    keys = cfg.keys
    client.zadd(keys.trending, {member(999, 9): 1e9})
    client.zadd(keys.trending_tag("new"), {member(998, 9): 1.0})  # a live post's tag, not trending
    client.zadd(keys.viewer_tags(VIEWER), {b"stale": 1e9})
    build_trending(lake, DAY, client, cfg)
    assert member(999, 9) not in client.zrange(keys.trending, 0, -1)
    assert client.exists(keys.trending_tag("new")) == 0
    assert client.zrange(keys.trending_tag("cats"), 0, -1) == [member(103, 13)]
    assert b"stale" not in client.zrange(keys.viewer_tags(VIEWER), 0, -1)
    assert not list(client.scan_iter(match=f"{keys.prefix}*tmp*"))


def test_trending_source_merges_global_and_viewer_tags(env):
    client, cfg, _, _ = env
    found = fetch(TrendingSource(cfg), request(), StepReader(client))
    assert all(c.source == "trending" for c in found)
    # 102 is slow globally but in the viewer's top tag (travel): the boost lifts it above 103
    assert ids(found) == [100, 101, 102, 103]
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    stranger = fetch(TrendingSource(cfg), request(viewer=12345), StepReader(client))
    assert ids(stranger) == [100, 101, 103, 102]


def test_trending_source_reads_the_streams_sets_while_they_hold_a_post(env):
    """The stream's sets (log2 velocity + a common decay term) are read while the global one holds
    any post; the source scores by velocity relative to the best, the viewer's tags boosting as for
    the daily sets; without them, the daily build's sets."""
    client, cfg, _, _ = env
    live = cfg.section("trending")["live_prefix"]
    client.zadd(spec.trend_key(live), {member(201, 21): 100.0, member(202, 22): 99.0, member(203, 23): 98.5})
    client.zadd(spec.trend_tag_key("travel", live), {member(203, 23): 98.5})  # the viewer's top tag
    found = fetch(TrendingSource(cfg), request(), StepReader(client))
    # 203: 2 ** -1.5 * (1 + 1.0 * travel's weight / top weight = 2) = 0.707 > 202's 0.5
    assert ids(found) == [201, 203, 202]
    assert [c.score for c in found] == pytest.approx([1.0, 2 ** -1.5 * 2, 0.5])
    assert ids(fetch(TrendingSource(cfg), request(viewer=12345), StepReader(client))) == [201, 202, 203]
    client.delete(spec.trend_key(live))
    assert ids(fetch(TrendingSource(cfg), request(), StepReader(client))) == [100, 101, 102, 103]  # the daily sets


def test_caps_are_respected(env):
    client, cfg, _, _ = env
    caps = {n: {"cap": 2} for n in ("trending", "popular", "social")}
    small = CandidateConfig.from_dict({**cfg.raw, "sources": caps})
    assert ids(fetch(TrendingSource(small), request(), StepReader(client))) == [100, 101]
    assert ids(fetch(PopularSource(small), request(), StepReader(client))) == [100, 102]
    assert ids(fetch(SocialSource(small), request(), StepReader(client))) == [100, 102]


def test_popular_source_is_the_cached_global_fallback(env):
    client, cfg, _, _ = env
    source = PopularSource(cfg)
    first = fetch(source, request(viewer=424242), StepReader(client))
    assert ids(first) == [100, 102, 101, 103, 108, 107] and all(c.source == "popular" for c in first)
    client.delete(cfg.keys.popular)
    assert ids(fetch(source, SourceRequest(7, NOW_MS + 1000), StepReader(client))) == ids(first)  # within cache_ms
    assert fetch(source, SourceRequest(7, NOW_MS + 10 * 60_000), StepReader(client)) == []  # re-read after it


def test_social_source_counts_close_accounts_out_of_network(env):
    client, cfg, _, stats = env
    keys = cfg.keys
    assert client.zrevrange(keys.top_affinity(VIEWER), 0, -1, withscores=True) == [(b"4", 5.0), (b"2", 2.0)]
    # newest first (ties: Redis orders members); the post by the viewer is fine in 3's own set
    assert client.zrevrange(keys.engaged(3), 0, -1) == [member(108, VIEWER), member(107, 2), member(101, 11),
                                                         member(100, 10)]
    assert client.ttl(keys.engaged(3)) > 0
    found = fetch(SocialSource(cfg), request(), StepReader(client))
    # 100: engaged by 2, 3 and 4; then one account each, newest first: 102 and 101 (1 h ago, ties by
    # post id), 103 (2 h); 107 is by followee 2, 108 the viewer's own, 9 neither followed nor affine
    assert [(c.post_id, c.score) for c in found] == [(100, 3.0), (102, 1.0), (101, 1.0), (103, 1.0)]
    assert all(c.source == "social" for c in found)
    assert stats["viewers_with_affinity"] == 2


def test_record_engagement_feeds_the_social_source_and_survives_a_rebuild(env, lake):
    client, cfg, _, _ = env
    keys = cfg.keys
    record_engagement(client, keys, 4, 200, 20, NOW_MS - 1000, cap=50)
    record_engagement(client, keys, 2, 200, 20, NOW_MS - 2000, cap=50)
    record_engagement(client, keys, 4, 201, 4, NOW_MS, cap=50)  # own post: ignored
    assert client.zscore(keys.engaged(4), member(201, 4)) is None
    build_social(lake, DAY, client, cfg)  # the daily merge keeps live entries newer than its day
    found = fetch(SocialSource(cfg), request(), StepReader(client))
    assert [(c.post_id, c.score) for c in found][:2] == [(100, 3.0), (200, 2.0)]
    for p in range(300, 310):
        record_engagement(client, keys, 4, p, 20, NOW_MS, cap=3)
    assert client.zcard(keys.engaged(4)) == 3


@pytest.mark.integration  # starts (and stops) a Valkey server of its own
def test_an_unreachable_redis_raises_and_run_sources_reports_an_error(lake):
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        cfg = CandidateConfig.from_dict({"feed": {"key_prefix": "down:"}})
        assert client.ping()
        server.stop()
        sources = [TrendingSource(cfg), PopularSource(cfg), SocialSource(cfg)]
        for source in sources:
            with pytest.raises(redis.ConnectionError):
                fetch(source, request(), StepReader(client))
        outcomes = run_sources(sources, request(), StepReader(client))
    assert [o.status for o in outcomes] == [ERROR, ERROR, ERROR]
    assert all(o.candidates == [] and "ConnectionError" in o.error for o in outcomes)


def test_social_asks_affine_followees_first_then_an_hourly_sample():
    cfg = CandidateConfig.from_dict({"social": {"followee_sample": 5, "affinity_accounts": 2}})
    source = SocialSource(cfg)
    following = set(range(100, 200))
    affinity = [7, 150, 8, 120]  # 150 and 120 are followed
    picked = source.accounts(VIEWER, following, affinity, NOW_MS)
    # the 2 closest accounts, the other affine followee, then 3 sampled followees (5 followees in all)
    assert picked[:3] == [7, 150, 120] and len(picked) == 6
    assert set(picked[3:]) <= following - {150, 120}
    assert source.accounts(VIEWER, following, affinity, NOW_MS + 60_000) == picked  # same hour
    later = [source.accounts(VIEWER, following, affinity, NOW_MS + h * 3_600_000) for h in range(1, 6)]
    assert any(p[3:] != picked[3:] for p in later)  # the sample rotates
    assert VIEWER not in source.accounts(VIEWER, {VIEWER, 100}, [VIEWER], NOW_MS)


def test_a_day_missing_from_the_lake_fails_instead_of_publishing_nothing(redis_server, lake):
    from features.jobs.inputs import MissingInputError

    client = redis.Redis.from_url(redis_server.url)
    cfg = CandidateConfig.from_dict({"feed": {"key_prefix": f"t{uuid.uuid4().hex[:8]}:"}})
    with pytest.raises(MissingInputError, match="engagements"):
        build_trending(lake, "2026-10-07", client, cfg)
    with pytest.raises(MissingInputError, match="viewer_author"):
        build_social(lake, NEXT, client, cfg)  # the lake has D+1, the feature snapshot does not
