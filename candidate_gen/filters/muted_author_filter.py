"""MutedAuthorFilter: a mute hides the muted account's posts from the muter, without unfollowing.
Fails open (a mute is a preference, not a privacy boundary)."""

from __future__ import annotations

from typing import Any

from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import FilterResult, split
from candidate_gen.records import Candidate


class MutedAuthorFilter:
    name = "muted"
    fails_closed = False  # a mute is a preference: without the mutes, keep

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, candidates: list[Candidate]) -> int:
        pipe.smembers(self.keys.mutes(viewer_id))
        return 1

    def decode(self, candidates: list[Candidate], replies: list[Any]) -> set[int]:
        return {int(u) for u in replies[0]}

    def apply(self, viewer_id: int, candidates: list[Candidate], state: Any, now_ms: int) -> FilterResult:
        if state is None:
            return FilterResult(list(candidates))
        return split(candidates, [c.author_id in state for c in candidates], self.name)
