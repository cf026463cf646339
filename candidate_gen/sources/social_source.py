"""Explore: posts that the people the viewer is close to engaged with recently, from accounts the
viewer does not follow (Explore is out-of-network).

Round trip 1 reads the viewer's followees and top-affinity accounts. The accounts asked are the
top-affinity ones plus a sample of `followee_sample` followees (those in the top affinity first, the
rest drawn at random, reseeded every hour so the page rotates without flickering between requests).
Round trip 2 reads each account's posts engaged within `engaged_days` of the request time. A post's
score is the number of distinct accounts that engaged it (social proof), ties broken by the most
recent engagement. Posts by the viewer or by an account they follow are dropped.
"""

from __future__ import annotations

import random

import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import SocialConfig
from candidate_gen.ranges import RangeReader
from candidate_gen.records import Candidate, parse_members
from candidate_gen.sources.base import SourceRequest
from data.days import HOUR_MS


class SocialSource:
    name = "social"

    def __init__(self, client: redis.Redis, cfg: CandidateConfig):
        self.client = client
        self.keys = cfg.keys
        self.config = cfg.source(self.name)
        self.social = SocialConfig.from_section(cfg.section("social"))
        self.ranges = RangeReader(client)

    def accounts(self, viewer: int, following: set[int], affinity: list[int], now_ms: int) -> list[int]:
        """Top-affinity accounts, then followees: affine ones first, then an hourly random sample."""
        s = self.social
        close = affinity[: s.affinity_accounts]
        affine_followees = [a for a in affinity if a in following]
        rest = sorted(following.difference(affine_followees))
        need = max(s.followee_sample - len(affine_followees), 0)
        if len(rest) > need:
            rest = random.Random(viewer * 1_000_003 + now_ms // HOUR_MS).sample(rest, need)
        picked = dict.fromkeys([*close, *affine_followees[: s.followee_sample], *rest])
        picked.pop(viewer, None)
        return list(picked)

    def fetch(self, request: SourceRequest) -> list[Candidate]:
        viewer, now, s = request.viewer_id, request.now_ms, self.social
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(self.keys.following(viewer))
        pipe.zrevrange(self.keys.top_affinity(viewer), 0, max(s.affinity_accounts, s.followee_sample) - 1)
        raw_following, raw_affinity = pipe.execute()
        following = {int(a) for a in raw_following}
        accounts = self.accounts(viewer, following, [int(a) for a in raw_affinity], now)
        if not accounts:
            return []
        # Only engagements before the request: a replayed request sees what was known then.
        engaged = self.ranges.newest([self.keys.engaged(a) for a in accounts], now, now - s.engaged_ms, s.per_account)
        seen: dict[bytes, list] = {}  # member -> [accounts, latest engagement ms]
        for rows in engaged:
            for raw, ts in rows:
                entry = seen.get(raw)
                if entry is None:
                    seen[raw] = [1, ts]
                else:
                    entry[0] += 1
                    entry[1] = max(entry[1], ts)
        out = []
        posts, authors = parse_members(list(seen))
        for (count, latest), post, author in zip(seen.values(), posts, authors, strict=True):
            if author == viewer or author in following:
                continue
            out.append((-count, -latest, -post, Candidate(post, author, 0, self.name, float(count))))
        out.sort(key=lambda row: row[:3])
        return [row[3] for row in out[: self.config.cap]]
