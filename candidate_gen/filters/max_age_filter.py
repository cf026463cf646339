"""MaxAgeFilter: drop posts older than the configured max age at request time.

A candidate whose creation time its source did not know (created_ms = 0: trending, popular and
social sets are scored by their own measure) is kept: those sets are built from posts within the
max age and expire within days.
"""

from __future__ import annotations

from typing import Any

from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import FilterResult, split
from candidate_gen.records import Candidate


class MaxAgeFilter:
    name = "too_old"
    fails_closed = False  # reads no state

    def __init__(self, cfg: CandidateConfig):
        self.max_age_ms = cfg.feed.max_age_ms

    def prepare(self, pipe: Any, viewer_id: int, candidates: list[Candidate]) -> int:
        return 0

    def decode(self, candidates: list[Candidate], replies: list[Any]) -> None:
        return None

    def apply(self, viewer_id: int, candidates: list[Candidate], state: Any, now_ms: int) -> FilterResult:
        oldest = now_ms - self.max_age_ms
        return split(candidates, [0 < c.created_ms < oldest for c in candidates], self.name)
