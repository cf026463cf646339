"""StoryTray: a viewer's followed accounts with unseen live stories, the closest first.

1. The viewer's slot, one round trip: whom it follows (active edges only: a private account's
   stories reach approved followers), the stories it saw, its affinities.
2. Each followee's live stories (candidate_gen.stories.queue_live), one pipelined round trip; the
   unseen ones are kept, per account.
3. The same privacy filters as the feeds and search (candidate_gen.filters.story_chain: blocked
   either way, muted, private and not approved), one round trip, failing closed. What they remove
   is never said: per account or per reason, a tray would tell who blocked or muted whom.
4. Each account scored by closeness (the relationship strength the social source keeps), recency
   of its newest unseen story and how many it has unseen ([stories] in serving/config.toml).
5. At the moment the answer leaves, each story is checked once more against that moment
   (`served_at_ms`, in the response): a story is never served at or after created + 24 h.

Redis down is a degraded, empty tray saying why, never an error: the tray has no other source.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candidate_gen import stories
from candidate_gen.block import CandidateBlock
from candidate_gen.filters import FilterChain
from candidate_gen.filters.base import ids
from candidate_gen.keys import Keys
from data.clock import Clock
from data.redis_client import FAILURES
from serving.config import StoriesConfig

logger = logging.getLogger(__name__)

HOUR_MS = 3_600_000
UNSEEN_CAP = 10  # beyond this many unseen stories, more adds nothing to an account's score


class StoryStateUnavailable(RuntimeError):
    """Redis did not record a viewer's story views: the caller retries."""


@dataclass
class TrayOutcome:
    items: list[dict[str, Any]]
    served_at_ms: int
    degraded: dict[str, str] = field(default_factory=dict)  # step -> why it fell back
    # accounts the privacy filters removed per reason, and stories the last expiry check did
    # (metrics only: a response saying so would tell who blocked or muted whom)
    removed: Counter = field(default_factory=Counter)


@dataclass
class _Account:
    author: int
    unseen: list[tuple[int, int]]  # (story id, created ms), newest first


class StoryTray:
    def __init__(self, client: Any, chain: FilterChain, keys: Keys, cfg: StoriesConfig, clock: Clock):
        self.client, self.chain, self.keys, self.cfg, self.clock = client, chain, keys, cfg, clock

    def tray(self, viewer_id: int, limit: int, time_left_ms: Callable[[], float] | None = None) -> TrayOutcome:
        now = self.clock.now_ms()
        degraded: dict[str, str] = {}
        removed: Counter = Counter()
        try:
            followees, seen, affinity = self._viewer_state(viewer_id)
            accounts = self._unseen_live(followees, seen, now)
        except FAILURES as exc:
            logger.warning("stories tray for viewer %s: Redis unavailable: %s", viewer_id, exc)
            return TrayOutcome([], self.clock.now_ms(), {"stories": f"state unavailable: {type(exc).__name__}"})
        if accounts:
            block = CandidateBlock.build([a.unseen[0][0] for a in accounts], [a.author for a in accounts],
                                         [a.unseen[0][1] for a in accounts], "stories", 0.0)
            result = self.chain.run(viewer_id, block, now, time_left_ms)
            removed.update(result.counts)
            if result.degraded:
                degraded["filters"] = "state unavailable: " + ",".join(result.degraded)
            allowed = set(result.kept.author.tolist())
            accounts = [a for a in accounts if a.author in allowed]
        ranked = self._ranked(accounts, affinity, now)
        served_at = self.clock.now_ms()  # the last check, as late as the answer allows
        items = []
        for account, score in ranked:
            live = [(s, t) for s, t in reversed(account.unseen) if stories.is_live(t, served_at)]  # oldest first
            removed["expired_at_answer"] += len(account.unseen) - len(live)
            if not live:
                continue
            items.append({"author_id": account.author, "score": score, "position": len(items), "unseen": len(live),
                          "latest_at_ms": live[-1][1],
                          "stories": [{"story_id": s, "created_at_ms": t} for s, t in live]})
            if len(items) == limit:
                break
        return TrayOutcome(items, served_at, degraded, +removed)

    def _viewer_state(self, viewer_id: int) -> tuple[list[int], set[int], dict[int, float]]:
        """Followees (the most affine first, at most max_followees), seen story ids, affinities."""
        pipe = self.client.pipeline(transaction=False)  # all three keys in the viewer's slot
        pipe.smembers(self.keys.following(viewer_id))
        pipe.smembers(self.keys.stories_seen(viewer_id))
        pipe.zrange(self.keys.top_affinity(viewer_id), 0, -1, withscores=True)
        following, seen, close = pipe.execute()
        affinity = {int(a): float(s) for a, s in close}
        followees = sorted(ids(following).tolist(), key=lambda a: (-affinity.get(a, 0.0), a))
        return followees[: self.cfg.max_followees], set(ids(seen).tolist()), affinity

    def _unseen_live(self, followees: list[int], seen: set[int], now: int) -> list[_Account]:
        if not followees:
            return []
        pipe = self.client.pipeline(transaction=False)  # one command per followee, each in its slot
        for author in followees:
            stories.queue_live(pipe, self.keys, author, now, self.cfg.max_stories)
        accounts = []
        for author, live in zip(followees, pipe.execute(), strict=True):
            unseen = [(int(s), int(t)) for s, t in live if int(s) not in seen]
            if unseen:
                accounts.append(_Account(author, unseen))
        return accounts

    def _ranked(self, accounts: list[_Account], affinity: dict[int, float],
                now: int) -> list[tuple[_Account, float]]:
        if not accounts:
            return []
        cfg = self.cfg
        close = np.array([affinity.get(a.author, 0.0) for a in accounts])
        close = np.maximum(close, 0.0) / (1.0 + np.maximum(close, 0.0))
        age_h = np.array([(now - a.unseen[0][1]) / HOUR_MS for a in accounts])
        unseen = np.array([min(len(a.unseen), UNSEEN_CAP) / UNSEEN_CAP for a in accounts])
        scores = (cfg.closeness_weight * close + cfg.recency_weight * 0.5 ** (np.maximum(age_h, 0.0)
                  / cfg.recency_half_life_h) + cfg.unseen_weight * unseen)
        order = np.lexsort((np.array([a.author for a in accounts]), -scores))  # ties: the lower id
        return [(accounts[i], float(scores[i])) for i in order]
