"""BlockedAuthorFilter: a block is a hard exclusion both ways — the viewer never sees posts of an
account it blocked or that blocked it. Fails closed."""

from __future__ import annotations

from typing import Any

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import ids


class BlockedAuthorFilter:
    name = "blocked"
    fails_closed = True  # without its state, remove what it cannot clear

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        # one slot (the viewer's); as a command, since a cluster pipeline refuses the `sunion` method
        pipe.execute_command("SUNION", self.keys.blocks(viewer_id), self.keys.blocked_by(viewer_id))
        return 1

    def decode(self, block: CandidateBlock, replies: list[Any]) -> Any:
        return ids(replies[0])  # accounts blocked either way

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        if state is None:
            return np.ones(len(block), dtype=bool)
        return np.isin(block.author, state)
