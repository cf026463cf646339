"""PrivateAuthorFilter: a private account's posts reach its approved followers only.

Checked at read for every candidate whatever its source (Explore sources do not know who follows
whom; a cache may predate an account going private). Fails closed.
"""

from __future__ import annotations

from typing import Any

from candidate_gen.config import CandidateConfig
from candidate_gen.filters.base import FilterResult, split
from candidate_gen.records import Candidate


class PrivateAuthorFilter:
    name = "private"
    fails_closed = True  # without its state, remove what it cannot clear

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, candidates: list[Candidate]) -> int:
        authors = sorted({c.author_id for c in candidates})
        pipe.smismember(self.keys.private, authors)
        pipe.smismember(self.keys.following(viewer_id), authors)
        return 2

    def decode(self, candidates: list[Candidate], replies: list[Any]) -> set[int]:
        """The private authors this viewer may not see."""
        authors = sorted({c.author_id for c in candidates})
        private, followed = replies
        return {a for a, p, f in zip(authors, private, followed, strict=True) if p and not f}

    def apply(self, viewer_id: int, candidates: list[Candidate], state: Any, now_ms: int) -> FilterResult:
        if state is None:
            # unverifiable: keep only the viewer's own posts (a later filter removes those too)
            return split(candidates, [c.author_id != viewer_id for c in candidates], f"{self.name}_unavailable")
        return split(candidates, [c.author_id in state for c in candidates], self.name)
