"""Build trending, per-hashtag trending, viewer hashtag interests and popular posts as of the end
of a day, from the lake into Redis.

The parts: explore.lake_reads (the lake), explore.frames (the scores; the trending formula is in
its docstring), explore.redis_writer (the writes), explore.configs ([trending] and [popular]).

Redis: the global and per-tag sets, `popular` and each viewer's tag set are each replaced in one
atomic step (a Lua script: a reader sees the old set or the new one, never half of one) and expire
after `ttl_hours`, so trends and viewers that are no longer rebuilt disappear.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import PopularConfig, TrendingConfig
from candidate_gen.explore.frames import (
    SCORE,
    TAG,
    WEIGHT,
    live_posts,
    popular_scores,
    post_tags,
    tag_trending,
    trending_scores,
    viewer_tag_weights,
    weighted_events,
)
from candidate_gen.explore.lake_reads import DELETED_MS, lookback_first_day, read_engagements, read_posts, require_day
from candidate_gen.explore.redis_writer import BatchedPipeline, grouped, post_members, zadd_args
from data import columns as c
from data.days import DAY_MS, HOUR_MS
from features.streaming.spec import post_tags_key, tags_value


def build_trending(lake_dir: Path, day: str, client: redis.Redis, cfg: CandidateConfig) -> dict:
    """Trending (global and per tag), viewers' top tags and popular posts as of the end of `day`
    into Redis; returns stats for the Dagster metadata."""
    started = time.perf_counter()
    tcfg = TrendingConfig.from_section(cfg.section("trending"))
    pcfg = PopularConfig.from_section(cfg.section("popular"))
    keys = cfg.keys
    require_day(lake_dir, day)
    span = max(tcfg.longest_ms, int(pcfg.window_hours * HOUR_MS), int(tcfg.viewer_tags_days * DAY_MS))
    eng = read_engagements(lake_dir, lookback_first_day(day, span), day)
    # Posts engaged in the viewer-tag window may be older than max age: read back that far too
    # (bounded, so the build does not grow with the lake's whole history).
    posts = read_posts(lake_dir, day, first=lookback_first_day(day, span + cfg.feed.max_age_ms))
    live = live_posts(posts, day, cfg.feed.max_age_ms)
    read_s = time.perf_counter() - started

    events = weighted_events(eng, day, span, tcfg.weights)
    del eng
    scores = trending_scores(events, live, day, tcfg)
    tags = post_tags(posts[posts[DELETED_MS].isna()].drop_duplicates(c.POST_ID))
    live_tags = tags[tags[c.POST_ID].isin(live[c.POST_ID])]
    per_tag = tag_trending(scores, live_tags, tcfg)
    popular = popular_scores(events, live, day, pcfg)
    vtags = viewer_tag_weights(events, tags, day, tcfg)
    compute_s = time.perf_counter() - started - read_s

    top = scores.head(tcfg.top_k)
    with BatchedPipeline(client) as cmd:
        trending_flat = zadd_args(post_members(top[c.POST_ID], top[c.AUTHOR_ID]), top[SCORE])
        cmd.replace_zset(keys.trending, trending_flat, tcfg.ttl_s)
        popular_flat = zadd_args(post_members(popular[c.POST_ID], popular[c.AUTHOR_ID]), popular[SCORE])
        cmd.replace_zset(keys.popular, popular_flat, pcfg.ttl_s)
        tag_names = per_tag[TAG].to_numpy()
        members = post_members(per_tag[c.POST_ID], per_tag[c.AUTHOR_ID])
        tag_scores = per_tag[SCORE].to_numpy()
        built = set()
        for tag, s, e in grouped(tag_names):
            cmd.replace_zset(keys.trending_tag(tag), zadd_args(members[s:e], tag_scores[s:e]), tcfg.ttl_s)
            built.add(tag)
        # A tag of today's posts that no longer trends loses yesterday's set now, not at its TTL.
        for tag in sorted(set(live_tags[TAG]) - built):
            cmd("DEL", keys.trending_tag(tag))
        # each live post's hashtags, for the stream's per-hashtag trending sets (posts published
        # on the stream carry their own)
        by_post = live_tags.sort_values(c.POST_ID, kind="stable")
        post_tag_names = by_post[TAG].tolist()
        for post, s, e in grouped(by_post[c.POST_ID].to_numpy()):
            if value := tags_value(post_tag_names[s:e]):
                cmd("SET", post_tags_key(int(post), tcfg.live_prefix), value, "EX", tcfg.ttl_s)
        viewers = vtags[c.VIEWER_ID].to_numpy()
        tag_members = [t.encode() for t in vtags[TAG]]
        weights = vtags[WEIGHT].to_numpy()
        n_viewers = 0
        for viewer, s, e in grouped(viewers):
            cmd.replace_zset(keys.viewer_tags(viewer), zadd_args(tag_members[s:e], weights[s:e]), tcfg.ttl_s)
            n_viewers += 1
    return {
        "day": day,
        "engagements_used": int(len(events)),
        "live_posts": int(len(live)),
        "trending_posts": int(len(scores)),
        "trending_written": int(len(top)),
        "top_score": float(scores[SCORE].iloc[0]) if len(scores) else 0.0,
        "tags_written": len(built),
        "popular_written": int(len(popular)),
        "viewers_with_tags": n_viewers,
        "redis_commands": cmd.commands,
        "read_s": round(read_s, 3),
        "compute_s": round(compute_s, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
