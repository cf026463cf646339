"""Rebuild the candidate state from the lake: for everyone (after Redis lost its data, or to start)
or for one viewer.

`rebuild_all` replays every lake day up to `day` through the fan-out worker itself in graph-only
mode (the graph, privacy, blocks, author post sets, tombstones: the very code that runs daily, so a
rebuilt state equals a replayed one), then decides the celebrity set from the follower
distribution (the rule shared with the author features, features.celebrity), then builds the Home
caches, server-side, of every account that follows someone and of the viewers active in the cache
TTL (a graph-only export has no impressions: its followers are its viewers), and the already-seen
sets from recent impressions.

`rebuild_viewer` replays one viewer's follow history (with the privacy history of the accounts it
concerns) into a scratch key namespace through the same worker, and swaps the result in.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import redis

from candidate_gen import events as ev
from candidate_gen import feed_build
from candidate_gen.config import CandidateConfig
from candidate_gen.fanout import FanoutStats, FanoutWorker
from candidate_gen.filters.already_seen_filter import record_seen
from candidate_gen.lake_reader import read_days, to_ms
from candidate_gen.reads import StepReader
from candidate_gen.scripts import Scripts
from data import columns as c
from data import lake
from data.days import day_end_ms, days_before


def flush(client: redis.Redis, pattern: str) -> int:
    n = 0
    for chunk in _chunks(client.scan_iter(match=pattern, count=5000), 5000):
        n += client.unlink(*chunk)
    return n


def _chunks(it, size: int):
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def lake_days(lake_dir: Path, day: str) -> list[str]:
    days = set()
    for table in ("users", "follows", "blocks", "posts"):
        days.update(d for d in lake.partition_days(lake_dir, table) if d <= day)
    return sorted(days)


def active_viewers(lake_dir: Path, day: str, days_back: float) -> np.ndarray:
    """Viewers with an impression landed in the last `days_back` days up to `day`."""
    first = days_before(day, max(int(days_back) - 1, 0))
    seen = read_days(lake_dir, "impressions", first, day, [c.VIEWER_ID])
    return np.unique(seen[c.VIEWER_ID].to_numpy()) if len(seen) else np.array([], dtype=np.int64)


def build_feeds(client: redis.Redis, cfg: CandidateConfig, viewers, now_ms: int, batch: int = 500) -> int:
    """Build the Home caches of `viewers` from their non-celebrity followees' recent posts
    (candidate_gen.feed_build), three round trips per batch of viewers."""
    scripts, reader = Scripts.register(client), StepReader(client)
    celebs = {int(u) for u in client.smembers(cfg.keys.celebs)}
    oldest = now_ms - cfg.feed.max_age_ms
    total = 0
    viewers = [int(v) for v in viewers]
    for i in range(0, len(viewers), batch):
        part = viewers[i : i + batch]
        pipe = client.pipeline(transaction=False)
        for v in part:
            pipe.smembers(cfg.keys.following(v))
        followees = pipe.execute()
        reads = [feed_build.posts_read(cfg, (a for a in map(int, f) if a not in celebs), oldest) for f in followees]
        pipe = client.pipeline(transaction=False)
        for v, replies in zip(part, reader.execute(reads), strict=True):
            feed_build.write(pipe, scripts, cfg, v, replies.windows[0])
        total += sum(pipe.execute())
    return total


def rebuild_all(lake_dir: Path, day: str, client: redis.Redis, cfg: CandidateConfig) -> dict:
    started = time.perf_counter()
    keys = cfg.keys
    flushed = flush(client, keys.pattern)
    client.hset(keys.meta, mapping={"built_through": "", "rebuilding": day})
    worker = FanoutWorker(client, cfg, name="lake", fanout=False)
    replay = FanoutStats()
    for d in lake_days(lake_dir, day):
        replay.add(worker.run_day(lake_dir, d))
    now_ms = day_end_ms(day)

    threshold, celebs = set_celebrities(client, cfg, worker.users)
    active = active_viewers(lake_dir, day, cfg.feed.ttl_days)
    following = following_someone(client, cfg, worker.users)
    viewers = np.union1d(active, np.asarray(following, dtype=np.int64))
    feed_posts = build_feeds(client, cfg, viewers, now_ms)
    seen = load_seen(lake_dir, day, client, cfg)
    client.hset(keys.meta, mapping={"built_through": day, "celebrity_followers": threshold})
    client.hdel(keys.meta, "rebuilding")
    return {
        "day": day, "flushed_keys": flushed, "replayed_events": replay.events,
        "replay_skipped": dict(replay.skipped), "users": len(worker.users),
        "celebrity_followers": threshold, "celebrities": len(celebs),
        "feeds_built": int(len(viewers)), "feeds_of_followers": len(following),
        "feeds_of_active_viewers": int(len(active)), "feed_posts": int(feed_posts), "seen_rows": seen,
        "seconds": round(time.perf_counter() - started, 1),
    }


def following_someone(client: redis.Redis, cfg: CandidateConfig, users: set[int]) -> list[int]:
    """Accounts of the replayed state with at least one followee (pending requests do not count)."""
    ids = sorted(users)
    pipe = client.pipeline(transaction=False)
    for u in ids:
        pipe.scard(cfg.keys.following(u))
    return [u for u, n in zip(ids, pipe.execute() if ids else [], strict=True) if n > 0]


def set_celebrities(client: redis.Redis, cfg: CandidateConfig, users: set[int]) -> tuple[int, list[int]]:
    """Decide the celebrity set from follower counts; give each of their followers the pull list."""
    keys = cfg.keys
    ids = sorted(users)
    pipe = client.pipeline(transaction=False)
    for u in ids:
        pipe.scard(keys.followers(u))
    counts = np.asarray(pipe.execute(), dtype=np.int64)
    threshold = cfg.celebrity.threshold(counts)  # the rule the author features use too
    celebs = [u for u, n in zip(ids, counts, strict=True) if n >= threshold]
    client.delete(keys.celebs)
    if celebs:
        client.sadd(keys.celebs, *celebs)
    pipe = client.pipeline(transaction=False)
    for celeb in celebs:
        pipe.smembers(keys.followers(celeb))
    write = client.pipeline(transaction=False)
    for celeb, followers in zip(celebs, pipe.execute() if celebs else [], strict=True):
        for v in followers:
            write.sadd(keys.celeb_followees(int(v)), celeb)
        if len(write.command_stack) > 5000:
            write.execute()
    write.execute()
    return threshold, celebs


def load_seen(lake_dir: Path, day: str, client: redis.Redis, cfg: CandidateConfig) -> int:
    """Recent impressions (seen_ttl_days up to `day`) into the viewers' already-seen sets."""
    first = days_before(day, max(int(cfg.feed.seen_ttl_days) - 1, 0))
    rows = read_days(lake_dir, "impressions", first, day, [c.VIEWER_ID, c.POST_ID, c.TS])
    if not len(rows):
        return 0
    rows = rows.assign(ts_ms=to_ms(rows[c.TS])).sort_values("ts_ms")
    pipe = client.pipeline(transaction=False)
    for viewer, part in rows.groupby(c.VIEWER_ID, sort=False):
        record_seen(pipe, cfg, int(viewer), part[c.POST_ID].tolist(), part["ts_ms"].tolist())
        if len(pipe.command_stack) >= 3000:
            pipe.execute()
    pipe.execute()
    return len(rows)


def rebuild_viewer(lake_dir: Path, day: str, client: redis.Redis, cfg: CandidateConfig, viewer: int) -> dict:
    """Rebuild one viewer's graph edges and Home cache from the lake (the rest of the state is kept)."""
    keys = cfg.keys
    follows = read_days(lake_dir, "follows", None, day, [c.FOLLOWER_ID, c.FOLLOWEE_ID, c.ACTION, c.TS])
    mine = follows[follows[c.FOLLOWER_ID] == viewer]
    concerned = set(mine[c.FOLLOWEE_ID].tolist()) | {viewer}
    users = read_days(lake_dir, "users", None, day, [c.USER_ID, c.UPDATED_AT, c.IS_PRIVATE])
    users = users[users[c.USER_ID].isin(concerned)]
    stream = ev.order(pd.concat([
        pd.DataFrame({"ts_ms": to_ms(users[c.UPDATED_AT]), "kind": "user", "a": users[c.USER_ID],
                      "b": 0, "x": users[c.IS_PRIVATE].astype("int64")}),
        pd.DataFrame({"ts_ms": to_ms(mine[c.TS]), "kind": mine[c.ACTION], "a": mine[c.FOLLOWER_ID],
                      "b": mine[c.FOLLOWEE_ID], "x": 0}),
    ], ignore_index=True))

    # replay into a scratch namespace with the same worker, then swap the result in
    scratch = cfg.with_feed(key_prefix=f"{keys.prefix}scratch:{viewer}:")
    flush(client, scratch.keys.pattern)
    FanoutWorker(client, scratch, name="scratch", fanout=False).consume(stream)
    following = {int(a) for a in client.smembers(scratch.keys.following(viewer))}
    pending = {int(a) for a in mine[c.FOLLOWEE_ID] if client.sismember(scratch.keys.pending(a), viewer)}
    flush(client, scratch.keys.pattern)

    # the old edges go first, then the replayed ones are added: the keys span many accounts' slots
    # (no transaction on a cluster), and in between the viewer follows less, never more, than either
    celebs = {int(u) for u in client.smembers(keys.celebs)}
    pipe = client.pipeline(transaction=False)
    for a in {int(x) for x in client.smembers(keys.following(viewer))} | concerned:
        pipe.srem(keys.followers(a), viewer)
        pipe.srem(keys.pending(a), viewer)
    pipe.delete(keys.following(viewer), keys.celeb_followees(viewer), keys.feed(viewer))
    pipe.execute()
    pipe = client.pipeline(transaction=False)
    for a in following:
        pipe.sadd(keys.followers(a), viewer)
        pipe.sadd(keys.following(viewer), a)
        if a in celebs:
            pipe.sadd(keys.celeb_followees(viewer), a)
    for a in pending:
        pipe.sadd(keys.pending(a), viewer)
    pipe.execute()
    posts = build_feeds(client, cfg, [viewer], day_end_ms(day))
    return {"viewer": viewer, "following": len(following), "pending": len(pending), "feed_posts": posts}
