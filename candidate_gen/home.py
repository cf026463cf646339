"""Reading a viewer's Home candidates: the fan-out cache merged with the celebrity pulls.

Two round trips at most:
1. the viewer's cache (newest N within the max age), its celebrity followee list, and a TTL refresh
   (reading is what keeps an active viewer's cache alive);
2. the recent posts of each celebrity followee (pulled, since they were not fanned out).
A missing cache (never built, or expired while the viewer was away) is built on the spot from the
followees' recent post sets, server-side, and the read says so (`built=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter

import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.keys import BUILT_SENTINEL
from candidate_gen.ranges import RangeReader
from candidate_gen.records import Candidate, parse_members
from candidate_gen.scripts import Scripts

# the source names a Home read gives its candidates (data/vocabulary.toml impression sources)
IN_NETWORK_SOURCE, CELEBRITY_SOURCE = "in_network", "celebrity"


@dataclass(frozen=True)
class HomeRead:
    candidates: list[Candidate]  # newest first, unique posts
    from_cache: int
    from_celebrities: int
    built: bool  # the cache was missing and was built during this read


class HomeCandidateReader:
    def __init__(self, client: redis.Redis, cfg: CandidateConfig):
        self.client = client
        self.cfg = cfg
        self.keys = cfg.keys
        self.scripts = Scripts.register(client)
        self.ranges = RangeReader(client)

    def read(self, viewer_id: int, now_ms: int, limit: int = 1000) -> HomeRead:
        keys, feed = self.keys, self.cfg.feed
        oldest = now_ms - feed.max_age_ms
        fkey = keys.feed(viewer_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.zrevrangebyscore(fkey, "+inf", oldest, start=0, num=limit + 1, withscores=True)
        pipe.smembers(keys.celeb_followees(viewer_id))
        pipe.expire(fkey, feed.ttl_s)
        cached, celebs, _ = pipe.execute()
        built = False
        if not cached:  # no sentinel: the cache does not exist
            self.scripts.feed_build(args=[keys.prefix, viewer_id, feed.cap, feed.ttl_s, oldest])
            cached = self.client.zrevrangebyscore(fkey, "+inf", oldest, start=0, num=limit + 1, withscores=True)
            built = True
        if cached and cached[0][0] == BUILT_SENTINEL:  # score +inf: always first
            cached = cached[1:]
        newest = cached[:limit]  # already newest first
        pulled: set[bytes] = set()
        if celebs:
            posts = self.ranges.newest([keys.author_posts(int(a)) for a in celebs], "+inf", oldest, limit)
            # a post both cached and pulled (its author became a celebrity) counts once, in-network
            merged = dict(cached)
            for rows in posts:
                for m, t in rows:
                    if m not in merged:
                        merged[m] = t
                        pulled.add(m)
            newest = sorted(merged.items(), key=itemgetter(1), reverse=True)[:limit]
        return HomeRead(*_candidates(newest, pulled), built)


def _candidates(newest: list[tuple[bytes, float]], pulled: set[bytes]) -> tuple[list[Candidate], int, int]:
    """(member, creation ms) pairs -> candidates, with few Python steps per item (this is on the
    request path: 1,000 candidates per Home request)."""
    if not newest:
        return [], 0, 0
    members = [m for m, _ in newest]
    times = [t for _, t in newest]
    posts, authors = parse_members(members)
    if pulled:
        sources = [CELEBRITY_SOURCE if m in pulled else IN_NETWORK_SOURCE for m in members]
    else:
        sources = repeat(IN_NETWORK_SOURCE)
    rows = zip(posts, authors, map(int, times), sources, times)
    out = list(map(tuple.__new__, repeat(Candidate), rows))  # NamedTuple's own __new__ is Python
    n_celeb = sum(1 for m in members if m in pulled)
    return out, len(out) - n_celeb, n_celeb
