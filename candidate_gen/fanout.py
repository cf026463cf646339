"""The fan-out worker: applies the event stream to the Redis feed caches and graph.

For each batch of events (config `fanout.batch_events`), in order:
1. account and graph events in stream order (candidate_gen.graph: the author's side of each edge,
   then the follower's, two round trips; follows also backfill the author's posts, unfollows
   remove them; blocks and mutes are plain set writes);
2. author post sets and tombstones, and the followers of each author who posted, as the graph
   stands after step 1 (one round trip);
3. each post into its author's followers' existing Home caches: `feed_add.lua`, one call per post
   with all follower caches on one server, one per slot of them on a Redis Cluster (one round trip);
4. the checkpoint, written only once steps 1-3 succeeded.
An interrupted batch is redone from the checkpoint. Redoing one is harmless: every write is
idempotent (set adds, sorted-set adds keyed by post, the follower's side of an edge written from
its state rather than its change), so a replay gives the same state — nothing lost, nothing
duplicated. Redis errors are retried with exponential backoff; the worker re-reads the checkpoint
and resumes from it.

Celebrity authors (the `celebs` set, decided at rebuild) are never fanned out: a post of theirs is
one add to their own recent-posts set (plus its trims), whatever their follower count; their
followers pull it at read time (`candidate_gen.home`).

Time: the worker's clock is the newest event time it has applied, never the wall clock, so a replay
of the lake makes the same age decisions as the first run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import redis

from candidate_gen import events as ev
from candidate_gen.config import CandidateConfig
from candidate_gen.graph import APPROVED_ALREADY, GraphWriter
from candidate_gen.records import member
from candidate_gen.scripts import Scripts
from data.days import DAY_MS, DAY_S
from data.redis_client import FAILURES, is_outage, slot_groups

log = logging.getLogger(__name__)



def retryable(error: BaseException) -> bool:
    """A server (a cluster's node) unavailable for now, or NOSCRIPT: a restarted server lost the
    scripts, registered again before the retry."""
    return is_outage(error) or isinstance(error, redis.exceptions.NoScriptError)


class StateLostError(RuntimeError):
    """Redis no longer holds the candidate state (e.g. it restarted empty): rebuild from the lake."""


@dataclass
class FanoutStats:
    events: int = 0
    applied: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> events skipped
    posts: int = 0
    celebrity_posts: int = 0
    celebrity_post_commands: int = 0  # Redis writes spent on celebrity posts
    deletions: int = 0
    fanout_targets: int = 0  # (viewer, post) pairs sent to existing caches
    inserts: int = 0  # posts newly added to feed caches
    batches: int = 0
    retries: int = 0
    resumed_from: int = 0  # offset the run started at (checkpoint)
    seconds: float = 0.0

    def add(self, other: FanoutStats) -> None:
        for name in ("events", "applied", "posts", "celebrity_posts", "celebrity_post_commands",
                     "deletions", "fanout_targets", "inserts", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.update(other.skipped)

    @property
    def reconciles(self) -> bool:
        return self.events == self.applied + sum(self.skipped.values())

    def as_metadata(self) -> dict:
        return {
            "events": self.events, "applied": self.applied, "skipped": dict(self.skipped),
            "posts": self.posts, "celebrity_posts": self.celebrity_posts,
            "deletions": self.deletions, "fanout_targets": self.fanout_targets,
            "inserts": self.inserts, "batches": self.batches, "retries": self.retries,
            "resumed_from": self.resumed_from, "seconds": round(self.seconds, 2),
        }


class FanoutWorker:
    """`run_day(lake_dir, day)` for the lake, `publish_post(...)` for the live entry point.

    `fanout=False` maintains the graph and the author post sets only (a rebuild's replay, where
    feed caches are built afterwards in one pass).
    """

    def __init__(self, client: redis.Redis, cfg: CandidateConfig, name: str = "lake", fanout: bool = True):
        self.client = client
        self.cfg = cfg
        self.keys = cfg.keys
        self.name = name
        self.fanout = fanout
        self._register()
        self.clock_ms = 0
        self._users: set[int] | None = None
        self._celebs: set[int] | None = None

    def _register(self) -> None:
        self.scripts = Scripts.register(self.client)
        self.graph = GraphWriter(self.client, self.keys, self.scripts, self.cfg.feed.cap, backfill=self.fanout)

    # --- entry points -------------------------------------------------------------------------
    def run_day(self, lake_dir: Path, day: str) -> FanoutStats:
        return self.consume(ev.lake_day(lake_dir, day), day)

    def publish_post(self, post_id: int, author_id: int, created_ms: int) -> FanoutStats:
        """Live: one post published now, fanned out at once."""
        return self.consume(ev.frame([(created_ms, "post", post_id, author_id, created_ms)]))

    def delete_post(self, post_id: int, author_id: int, created_ms: int, deleted_ms: int) -> FanoutStats:
        return self.consume(ev.frame([(deleted_ms, "delete", post_id, author_id, created_ms)]))

    def consume(self, events: pd.DataFrame, day: str | None = None) -> FanoutStats:
        """Apply `events` (stream order). With a `day`, resume from and advance its checkpoint;
        without one (live calls, a scratch replay) keep no checkpoint: the events are applied once,
        and a batch a Redis error interrupted is applied again (every write is idempotent)."""
        started = time.perf_counter()
        stats = FanoutStats(events=len(events))
        offset = self._resume_offset(day, len(events))
        stats.resumed_from = offset
        if offset:
            stats.skipped["before_checkpoint"] += offset
        cols = [events[k].to_numpy() for k in ev.COLUMNS]
        size = self.cfg.fanout.batch_events
        while offset < len(events):
            end = min(offset + size, len(events))
            rows = list(zip(*(col[offset:end] for col in cols), strict=True))
            attempt = 0
            while True:
                try:
                    stats.add(self._apply_batch(rows, day, end))
                    offset = end
                    break
                except FAILURES as exc:
                    if not retryable(exc):
                        raise
                    attempt += 1
                    stats.retries += 1
                    if attempt >= self.cfg.fanout.retry_max_attempts:
                        raise RuntimeError(
                            f"fan-out {self.name}: Redis unavailable after {attempt} attempts; "
                            f"day {day} stopped at offset {offset} (checkpointed)"
                        ) from exc
                    pause = min(self.cfg.fanout.retry_base_s * 2**attempt, self.cfg.fanout.retry_max_s)
                    log.warning("fan-out %s: %s; retry %d in %.1fs", self.name, exc, attempt, pause)
                    time.sleep(pause)
                    self._users = self._celebs = None  # reload what Redis holds after reconnecting
                    if isinstance(exc, redis.exceptions.NoScriptError):
                        self._register()
                    if day is None:
                        continue  # no checkpoint to ask: redo the batch (idempotent)
                    try:
                        resumed = self._resume_offset(day, len(events))
                    except FAILURES as again:
                        if not retryable(again):
                            raise
                        continue
                    if resumed >= end:  # committed, but the reply was lost: do not redo it
                        stats.applied += resumed - offset
                        offset = resumed
                        break
        if day is not None and not len(events):
            self._pass_empty_day(day)
        stats.seconds = time.perf_counter() - started
        return stats

    # --- state ---------------------------------------------------------------------------------
    def _resume_offset(self, day: str | None, n_events: int) -> int:
        if day is None:
            return 0
        if not self.has_state():
            raise StateLostError(
                f"no candidate state under {self.keys.prefix!r} (never built, or Redis lost it): "
                "materialize candidates/rebuild first"
            )
        saved = self.client.hgetall(self.keys.checkpoint(self.name))
        saved_day = saved.get(b"day", b"").decode()
        if saved_day > day:
            return n_events  # a later day is already applied
        if saved_day == day:
            return min(int(saved.get(b"offset", 0)), n_events)
        return 0

    def _pass_empty_day(self, day: str) -> None:
        """A day without events is applied too: the checkpoint moves on to it (never back), or the
        next day's run would find a day missing (an export with posts on its first day only)."""
        key = self.keys.checkpoint(self.name)
        saved = self.client.hget(key, "day")
        if saved is None or saved.decode() < day:
            self.client.hset(key, mapping={"day": day, "offset": 0})

    def has_state(self) -> bool:
        """Whether Redis holds a built candidate state (candidates/rebuild marks it)."""
        return bool(self.client.hexists(self.keys.meta, "built_through"))

    def checkpoint_day(self) -> str | None:
        """The last day this worker applied (fully or partly), or None."""
        day = self.client.hget(self.keys.checkpoint(self.name), "day")
        return day.decode() if day else None

    @property
    def users(self) -> set[int]:
        if self._users is None:
            self._users = {int(u) for u in self.client.smembers(self.keys.users)}
        return self._users

    @property
    def celebs(self) -> set[int]:
        if self._celebs is None:
            self._celebs = {int(u) for u in self.client.smembers(self.keys.celebs)}
        return self._celebs

    # --- one batch -----------------------------------------------------------------------------
    def _apply_batch(self, rows: list[tuple], day: str | None, end: int) -> FanoutStats:
        stats = FanoutStats(batches=1)
        keys, feed = self.keys, self.cfg.feed
        users, celebs = set(self.users), self.celebs
        clock = max(self.clock_ms, max(r[0] for r in rows))
        oldest = clock - feed.max_age_ms

        # 1. accounts and graph, in stream order
        graph_events: list[tuple[str, int, int, int]] = []
        creations: list[tuple[int, int, int]] = []
        deletions: list[tuple[int, int, int]] = []
        for ts, kind, a, b, x in rows:
            a, b = int(a), int(b)
            if kind == "user":
                users.add(a)
                graph_events.append((kind, a, b, int(x)))
            elif kind in ev.GRAPH_KINDS or kind in ev.BLOCK_KINDS:
                if a not in users or b not in users:
                    stats.skipped["unknown_user"] += 1
                    continue
                if a == b:
                    stats.skipped["self_edge"] += 1
                    continue
                graph_events.append((kind, a, b, 0))
            elif kind == "post":
                if b not in users:
                    stats.skipped["unknown_author"] += 1
                    continue
                if int(x) < oldest:
                    stats.skipped["older_than_max_age"] += 1
                    continue
                creations.append((a, b, int(x)))
            elif kind == "delete":
                deletions.append((a, b, int(ts)))
            else:
                stats.skipped["unknown_kind"] += 1
                continue
            stats.applied += 1
        if graph_events:
            codes = self.graph.apply(graph_events, celebs)
            # an approve with no pending request (out of order, or repeated) changes nothing
            no_request = sum(1 for (kind, *_), code in zip(graph_events, codes, strict=True)
                             if kind == "approve" and code in (0, APPROVED_ALREADY))
            if no_request:
                stats.skipped["approve_without_request"] += no_request
                stats.applied -= no_request

        # 2. author post sets, tombstones, and the followers of each author to fan out to
        posts = self.client.pipeline(transaction=False)
        meta_ttl_s = feed.max_age_ms // 1000 + DAY_S  # wall-clock TTL: the max age filter judges age
        touched: dict[int, None] = {}
        for post, author, created in creations:
            posts.zadd(keys.author_posts(author), {member(post, author): created})
            posts.set(keys.post_meta(post), b"%d:%d" % (author, created), ex=meta_ttl_s)
            touched[author] = None
            stats.posts += 1
            if author in celebs:
                stats.celebrity_posts += 1
                stats.celebrity_post_commands += 1
        for author in touched:
            posts.zremrangebyscore(keys.author_posts(author), "-inf", f"({oldest}")
            posts.zremrangebyrank(keys.author_posts(author), 0, -(feed.author_posts_cap + 1))
            if author in celebs:
                stats.celebrity_post_commands += 2
        for post, author, deleted_ms in deletions:
            posts.zadd(keys.tombstones, {str(post): deleted_ms})
            posts.zrem(keys.author_posts(author), member(post, author))
            stats.deletions += 1
        if deletions:  # a tombstone outlives its post's max age by a day, then age filters it
            posts.zremrangebyscore(keys.tombstones, "-inf", f"({oldest - DAY_MS}")
        # read after the post is in its author's set (same slot, so in order): a follow applied
        # meanwhile by another worker either sees the post in its backfill or is seen here
        fan_authors = [a for a in touched if a not in celebs] if self.fanout else []
        for author in fan_authors:
            posts.smembers(keys.followers(author))
        replies = posts.execute() if len(posts) else []

        # 3. each post into its author's followers' existing caches, one call per slot of them
        if fan_authors:
            followers = dict(zip(fan_authors, replies[len(replies) - len(fan_authors):], strict=True))
            fan = self.client.pipeline(transaction=False)
            for post, author, created in creations:
                if author in followers:
                    feeds = [keys.feed(int(v)) for v in followers[author]]
                    stats.fanout_targets += len(feeds)
                    m = member(post, author)
                    for group in slot_groups(self.client, feeds):
                        self.scripts.feed_add.queue(fan, [feeds[i] for i in group], [created, m, feed.cap])
            if len(fan):
                stats.inserts += sum(fan.execute())

        # 4. the checkpoint, once the batch's writes are in: an interrupted batch is redone
        if day is not None:
            self.client.hset(keys.checkpoint(self.name), mapping={"day": day, "offset": end})
        # commit the batch's effects on the worker's own view only now
        self._users = users
        self.clock_ms = clock
        return stats
