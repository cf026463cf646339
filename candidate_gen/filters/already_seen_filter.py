"""AlreadySeenFilter: drop posts the viewer was recently shown (their impressions).

Fails open: without the seen set a repeat may be shown, which is not a leak.
`record_seen` is how served impressions enter the set (the ranking service, and rebuilds from the
lake's impression log).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import redis

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import flags


class AlreadySeenFilter:
    name = "already_seen"
    fails_closed = False  # a repeat is not a leak: without the seen set, keep

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        pipe.zmscore(self.keys.seen(viewer_id), block.post.tolist())
        return 1

    def decode(self, block: CandidateBlock, replies: list[Any]) -> Any:
        return flags(replies[0])  # seen, per candidate

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        if state is None:
            return np.zeros(len(block), dtype=bool)
        return state



def record_seen(
    target: redis.Redis | redis.client.Pipeline,
    cfg: CandidateConfig,
    viewer_id: int,
    post_ids: list[int],
    ts_ms: list[int] | int,
) -> None:
    """Add impressions to the viewer's seen set, keep the newest `seen_cap`, refresh its TTL.

    Given a client, writes at once; given a pipeline, only queues (the caller executes).
    """
    if not post_ids:
        return
    stamps = ts_ms if isinstance(ts_ms, list) else [ts_ms] * len(post_ids)
    key = cfg.keys.seen(viewer_id)
    pipe = target if isinstance(target, redis.client.Pipeline) else target.pipeline(transaction=False)
    pipe.zadd(key, {str(p): t for p, t in zip(post_ids, stamps, strict=True)})
    pipe.zremrangebyrank(key, 0, -(cfg.feed.seen_cap + 1))
    pipe.expire(key, cfg.feed.seen_ttl_s)
    if pipe is not target:
        pipe.execute()
