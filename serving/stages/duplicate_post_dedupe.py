"""DuplicatePostDedupe: a post proposed by several sources is kept once, from the first source that
proposed it (in-network before Explore, then in blend order)."""

from __future__ import annotations

from candidate_gen.block import first_occurrences
from serving.pipeline import FeedQuery, FeedState


class DuplicatePostDedupe:
    name = "dedupe"

    def run(self, query: FeedQuery, state: FeedState) -> None:
        state.remove(first_occurrences(state.candidates.post), "duplicate")

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass  # duplicates left in are deduplicated again at selection
