"""VisibilityFilterStage: the shared filters of candidate generation (own post, max age, deleted,
blocked both ways, muted, private-not-approved, already seen), cheapest first, one Redis round trip
(candidate_gen.filters). Privacy fails closed: filters whose state cannot be read remove what they
cannot clear, and an unexpected failure of the whole stage removes every candidate. Since that
empties the page, a failed read is retried within the request's budget (the chain's `attempts`)."""

from __future__ import annotations

from candidate_gen.block import CandidateBlock
from candidate_gen.filters import FilterChain
from serving.pipeline import FeedQuery, FeedState


class VisibilityFilterStage:
    name = "filters"

    def __init__(self, chain: FilterChain):
        self.chain = chain

    def run(self, query: FeedQuery, state: FeedState) -> None:
        result = self.chain.run(query.viewer_id, state.candidates, query.now_ms, query.deadline.remaining_ms)
        state.candidates = result.kept
        state.removed.update(result.counts)
        if "integrity" in result.states:  # the labels, for the integrity stage to decide by
            state.labels = result.states["integrity"]
        if result.degraded:
            state.degraded[self.name] = "state unavailable: " + ",".join(result.degraded)
        if result.retries:
            state.retries[self.name] = result.retries

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.removed["filters_unavailable"] += len(state.candidates)
        state.candidates = CandidateBlock.empty()
