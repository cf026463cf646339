"""Explore: posts that the people the viewer is close to engaged with recently, from accounts the
viewer does not follow (Explore is out-of-network).

Step 1 reads the viewer's followees and top-affinity accounts. The accounts asked are the
top-affinity ones plus a sample of `followee_sample` followees (those in the top affinity first, the
rest drawn at random, reseeded every hour so the page rotates without flickering between requests).
Step 2 reads each account's posts engaged within `engaged_days` of the request time. A post's
score is the number of distinct accounts that engaged it (social proof), ties broken by the most
recent engagement. Posts by the viewer or by an account they follow are dropped.
"""

from __future__ import annotations

import random

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import SocialConfig
from candidate_gen.reads import Reads
from candidate_gen.sources.base import Plan, SourceRequest
from data.days import HOUR_MS


class SocialSource:
    name = "social"

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys
        self.config = cfg.source(self.name)
        self.social = SocialConfig.from_section(cfg.section("social"))

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

    def plan(self, request: SourceRequest) -> Plan:
        viewer, now, s = request.viewer_id, request.now_ms, self.social
        got = yield (Reads().command("smembers", self.keys.following(viewer))
                     .command("zrevrange", self.keys.top_affinity(viewer), 0,
                              max(s.affinity_accounts, s.followee_sample) - 1))
        raw_following, raw_affinity = got.commands
        following = {int(a) for a in raw_following}
        accounts = self.accounts(viewer, following, [int(a) for a in raw_affinity], now)
        if not accounts:
            return CandidateBlock.empty()
        # Only engagements before the request: a replayed request sees what was known then.
        got = yield Reads().window([self.keys.engaged(a) for a in accounts], now, now - s.engaged_ms, s.per_account)
        rows = got.windows[0]
        if not len(rows):
            return CandidateBlock.empty()
        post, author, ts = rows.post, rows.author, rows.scores
        # per post: how many of the accounts engaged it, and the latest of their engagements
        posts, first, inverse, count = np.unique(post, return_index=True, return_inverse=True, return_counts=True)
        latest = np.full(len(posts), -np.inf)
        np.maximum.at(latest, inverse, ts)
        authors = author[first]
        keep = (authors != viewer) & ~np.isin(authors, np.fromiter(following, dtype=np.int64, count=len(following)))
        found = CandidateBlock.build(posts, authors, 0, self.name, count.astype(np.float64)).take(keep)
        latest = latest[keep]
        return found.take(np.lexsort((-found.post, -latest, -found.score))[: self.config.cap])
