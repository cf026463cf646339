"""OwnPostFilter: a viewer is never recommended their own post."""

from __future__ import annotations

from typing import Any

from candidate_gen.filters.base import FilterResult, split
from candidate_gen.records import Candidate


class OwnPostFilter:
    name = "own_post"
    fails_closed = False  # reads no state

    def prepare(self, pipe: Any, viewer_id: int, candidates: list[Candidate]) -> int:
        return 0

    def decode(self, candidates: list[Candidate], replies: list[Any]) -> None:
        return None

    def apply(self, viewer_id: int, candidates: list[Candidate], state: Any, now_ms: int) -> FilterResult:
        return split(candidates, [c.author_id == viewer_id for c in candidates], self.name)
