"""OwnPostFilter: a viewer is never recommended their own post."""

from __future__ import annotations

from typing import Any

import numpy as np

from candidate_gen.block import CandidateBlock


class OwnPostFilter:
    name = "own_post"
    fails_closed = False  # reads no state

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        return 0

    def decode(self, block: CandidateBlock, replies: list[Any]) -> Any:
        return None

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        return block.author == viewer_id
