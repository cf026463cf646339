"""PrivateAuthorFilter: a private account's posts reach its approved followers only.

Checked at read for every candidate whatever its source (Explore sources do not know who follows
whom; a cache may predate an account going private). Fails closed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig


class PrivateAuthorFilter:
    name = "private"
    fails_closed = True  # without its state, remove what it cannot clear

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        authors = np.unique(block.author).tolist()
        pipe.smismember(self.keys.private, authors)
        pipe.smismember(self.keys.following(viewer_id), authors)
        return 2

    def decode(self, block: CandidateBlock, replies: list[Any]) -> Any:
        """The private authors this viewer may not see."""
        authors = np.unique(block.author)
        private, followed = (np.asarray(r, dtype=bool) for r in replies)
        return authors[private & ~followed]

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        if state is None:
            # unverifiable: keep only the viewer's own posts (a later filter removes those too)
            return block.author != viewer_id
        return np.isin(block.author, state)
