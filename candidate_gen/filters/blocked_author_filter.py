"""BlockedAuthorFilter: a block is a hard exclusion both ways — the viewer never sees posts of an
account it blocked or that blocked it. Fails closed."""

from __future__ import annotations

from typing import Any

from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import FilterResult, split
from candidate_gen.records import Candidate


class BlockedAuthorFilter:
    name = "blocked"
    fails_closed = True  # without its state, remove what it cannot clear

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, candidates: list[Candidate]) -> int:
        pipe.sunion(self.keys.blocks(viewer_id), self.keys.blocked_by(viewer_id))
        return 1

    def decode(self, candidates: list[Candidate], replies: list[Any]) -> set[int]:
        return {int(u) for u in replies[0]}

    def apply(self, viewer_id: int, candidates: list[Candidate], state: Any, now_ms: int) -> FilterResult:
        if state is None:
            return split(candidates, [True] * len(candidates), f"{self.name}_unavailable")
        return split(candidates, [c.author_id in state for c in candidates], self.name)
