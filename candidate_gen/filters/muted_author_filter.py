"""MutedAuthorFilter: a mute hides the muted account's posts from the muter, without unfollowing.
Fails open (a mute is a preference, not a privacy boundary)."""

from __future__ import annotations

from typing import Any

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import ids


class MutedAuthorFilter:
    name = "muted"
    fails_closed = False  # a mute is a preference: without the mutes, keep

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        pipe.smembers(self.keys.mutes(viewer_id))
        return 1

    def decode(self, block: CandidateBlock, replies: list[Any]) -> Any:
        return ids(replies[0])

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        if state is None:
            return np.zeros(len(block), dtype=bool)
        return np.isin(block.author, state)
