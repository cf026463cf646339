"""DuplicatePostDedupe: a post proposed by several sources is kept once, from the first source that
proposed it (in-network before Explore, then in blend order)."""

from __future__ import annotations

from serving.pipeline import FeedQuery, FeedState


class DuplicatePostDedupe:
    name = "dedupe"

    def run(self, query: FeedQuery, state: FeedState) -> None:
        seen: set[int] = set()
        keep = []
        for c in state.candidates:
            keep.append(c.post_id not in seen)
            seen.add(c.post_id)
        state.remove(keep, "duplicate")

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass  # duplicates left in are deduplicated again at selection
