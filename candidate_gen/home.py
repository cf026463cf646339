"""Reading a viewer's Home candidates: the fan-out cache merged with the celebrity pulls.

Two steps at most (candidate_gen.reads: in a request, each shares its round trip with the other
sources' reads):
1. the viewer's cache (newest N within the max age), its celebrity followee list, and a TTL refresh
   (reading is what keeps an active viewer's cache alive; its reply says whether the cache exists);
2. the recent posts of each celebrity followee (pulled, since they were not fanned out).
A missing cache (never built, or expired while the viewer was away) is built on the spot from the
followees' recent post sets (candidate_gen.feed_build) and read again (four round trips of their
own), and the read says so (`built=True`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import redis

from candidate_gen import feed_build
from candidate_gen.block import CELEBRITY_SOURCE, IN_NETWORK_SOURCE, CandidateBlock, source_code
from candidate_gen.config import CandidateConfig
from candidate_gen.reads import Reads, Replies, StepReader, run_plan
from candidate_gen.scripts import Scripts


@dataclass(frozen=True)
class HomeRead:
    candidates: CandidateBlock  # newest first, unique posts
    from_cache: int
    from_celebrities: int
    built: bool  # the cache was missing and was built during this read


class HomeCandidateReader:
    def __init__(self, client: redis.Redis, cfg: CandidateConfig):
        self.client = client
        self.cfg = cfg
        self.keys = cfg.keys
        self.scripts = Scripts.register(client)
        self.reader = StepReader(client)

    def read(self, viewer_id: int, now_ms: int, limit: int = 1000) -> HomeRead:
        """The read on its own (tools, tests, benchmarks); a request runs `plan` with its other sources."""
        return run_plan(self.plan(viewer_id, now_ms, limit), self.reader)

    def plan(self, viewer_id: int, now_ms: int, limit: int = 1000) -> Generator[Reads, Replies, HomeRead]:
        keys, feed = self.keys, self.cfg.feed
        oldest = now_ms - feed.max_age_ms
        fkey = keys.feed(viewer_id)
        # the window leaves the build sentinel (score +inf, always first) out: limit + 1 makes room for it
        got = yield (Reads().window([fkey], "+inf", oldest, limit + 1)
                     .command("smembers", keys.celeb_followees(viewer_id))
                     .command("expire", fkey, feed.ttl_s))
        rows, (celebs, exists) = got.windows[0], got.commands  # EXPIRE says whether the cache exists
        built = not exists
        if built:  # expired while the viewer was away, or never built: from the followees' post sets
            followees = (yield Reads().command("smembers", keys.following(viewer_id))).commands[0]
            pulled = {int(a) for a in celebs}
            got = yield feed_build.posts_read(self.cfg, (a for a in map(int, followees) if a not in pulled), oldest)
            feed_build.write(self.client, self.scripts, self.cfg, viewer_id, got.windows[0])
            rows = (yield Reads().window([fkey], "+inf", oldest, limit + 1)).windows[0]
        cached_block = CandidateBlock.build(rows.post, rows.author, rows.scores, IN_NETWORK_SOURCE, rows.scores)
        out = cached_block.take(slice(0, limit))  # already newest first
        if celebs:
            got = yield Reads().window([keys.author_posts(int(a)) for a in celebs], "+inf", oldest, limit)
            rows = got.windows[0]
            pulled = CandidateBlock.build(rows.post, rows.author, rows.scores, CELEBRITY_SOURCE, rows.scores)
            # a post both cached and pulled (its author became a celebrity) counts once, in-network
            pulled = pulled.take(~np.isin(pulled.post, cached_block.post))
            merged = CandidateBlock.concat([cached_block, pulled])
            out = merged.take(np.argsort(-merged.created_ms, kind="stable")[:limit])
        n_celeb = int((out.source == source_code(CELEBRITY_SOURCE)).sum())
        return HomeRead(out, len(out) - n_celeb, n_celeb, built)

