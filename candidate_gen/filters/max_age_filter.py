"""MaxAgeFilter: drop posts older than the configured max age at request time.

A candidate whose creation time its source did not know (created_ms = 0: trending, popular and
social sets are scored by their own measure) is kept: those sets are built from posts within the
max age and expire within days.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig


class MaxAgeFilter:
    name = "too_old"
    fails_closed = False  # reads no state

    def __init__(self, cfg: CandidateConfig):
        self.max_age_ms = cfg.feed.max_age_ms

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        return 0

    def decode(self, block: CandidateBlock, replies: list[Any]) -> Any:
        return None

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        return (block.created_ms > 0) & (block.created_ms < now_ms - self.max_age_ms)
