"""DeletedPostFilter: drop deleted posts (tombstones written by the fan-out worker).

A deletion is not chased through every follower's cache (that would cost a write per follower);
it is one tombstone, checked here at read. Fails closed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import flags


class DeletedPostFilter:
    name = "deleted"
    fails_closed = True  # without its state, remove what it cannot clear

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        pipe.zmscore(self.keys.tombstones, block.post.tolist())
        return 1

    def decode(self, block: CandidateBlock, replies: list[Any]) -> Any:
        return flags(replies[0])  # deleted, per candidate

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        if state is None:
            return np.ones(len(block), dtype=bool)
        return state
