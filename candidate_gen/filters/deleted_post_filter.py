"""DeletedPostFilter: drop deleted posts (tombstones written by the fan-out worker).

A deletion is not chased through every follower's cache (that would cost a write per follower);
it is one tombstone, checked here at read. Fails closed.
"""

from __future__ import annotations

from typing import Any

from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import FilterResult, split
from candidate_gen.records import Candidate


class DeletedPostFilter:
    name = "deleted"
    fails_closed = True  # without its state, remove what it cannot clear

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, candidates: list[Candidate]) -> int:
        pipe.zmscore(self.keys.tombstones, [str(c.post_id) for c in candidates])
        return 1

    def decode(self, candidates: list[Candidate], replies: list[Any]) -> set[int]:
        return {c.post_id for c, s in zip(candidates, replies[0], strict=True) if s is not None}

    def apply(self, viewer_id: int, candidates: list[Candidate], state: Any, now_ms: int) -> FilterResult:
        if state is None:
            return split(candidates, [True] * len(candidates), f"{self.name}_unavailable")
        return split(candidates, [c.post_id in state for c in candidates], self.name)
