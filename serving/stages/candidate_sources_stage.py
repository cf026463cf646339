"""CandidateSourcesStage: every source of a surface together, each step's reads of all of them in one
round trip (each with its switch, cap, timeout and fail-open policy, candidate_gen.sources.run_sources),
then the pool: each group's candidates in
order; a group of several sources gives each a share of the group's size in proportion to its cap
(its best first, distinct posts; a source that returns fewer leaves its share to the others). No
interleaving: the whole pool is scored, so only *which* candidates enter matters (candidate_gen.blend's
round-robin costs ~2 ms of Python a request for an order nobody reads).

Home = [in-network sources as they come] + [out-of-network (Explore) sources blended to
`out_of_network_candidates`];
Explore = [Explore sources blended to `candidates`]. A failed or slow source is reported in the
response (`degraded["sources.<name>"]`) and contributes nothing, unless every source came back empty:
then the late ones are waited for within the remaining budget (at least `late_min_wait_ms`). A source
is late past its own timeout *and* past what the budget can give the sources while leaving
hydration and scoring `model_min_ms`: the sources' steps are shared round trips, so one slow step
makes every source late at once, and a Home page without its in-network posts is worse than a
page a few ms later.

Riders: a later stage that needs a read of the viewer's own (the fatigue rescorer's set) can ride the
sources' first round trip instead of taking one of its own; its replies go into `state.rides` under
its name (none when the round trip failed: the stage then reads for itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from candidate_gen.block import CandidateBlock, first_occurrences
from candidate_gen.reads import Reads, Replies, StepReader
from candidate_gen.sources.base import CandidateSource, SourceRequest, run_sources
from serving.pipeline import FeedQuery, FeedState


@dataclass(frozen=True)
class SourceGroup:
    sources: tuple[CandidateSource, ...]
    size: int  # candidates the group may add to the pool


class Rider(Protocol):
    name: str

    def reads(self, query: FeedQuery) -> Reads: ...


class RidingReader:
    """The StepReader of one request that sends the riders' reads with the first step it executes."""

    def __init__(self, reader: StepReader, extra: list[Reads]):
        self.reader, self.extra = reader, extra
        self.replies: list[Replies] | None = None

    def execute(self, batch: Sequence[Reads]) -> list[Replies]:
        if not self.extra:
            return self.reader.execute(batch)
        extra, self.extra = self.extra, []
        got = self.reader.execute([*batch, *extra])
        self.replies = got[len(batch):]
        return got[: len(batch)]


class CandidateSourcesStage:
    name = "sources"

    def __init__(self, groups: Sequence[SourceGroup], reader: StepReader, late_min_wait_ms: float = 0.0,
                 model_min_ms: float = 0.0, riders: Sequence[Rider] = ()):
        self.groups = tuple(groups)
        self.reader = reader
        self.riders = tuple(riders)
        self.model_min_ms = model_min_ms  # the budget hydration and scoring need after the sources
        self.late_min_wait_ms = late_min_wait_ms
        self._all = [s for g in self.groups for s in g.sources]

    def run(self, query: FeedQuery, state: FeedState) -> None:
        late_wait = max(query.deadline.remaining_ms(), self.late_min_wait_ms) if self.late_min_wait_ms else 0.0
        # the sources may go on while the budget still leaves hydration and scoring their share
        patience = query.deadline.remaining_ms() - self.model_min_ms
        reader = RidingReader(self.reader, [r.reads(query) for r in self.riders]) if self.riders else self.reader
        outcomes = run_sources(self._all, SourceRequest(query.viewer_id, query.now_ms), reader, late_wait,
                               patience)
        if self.riders and reader.replies is not None:
            state.rides = {r.name: got for r, got in zip(self.riders, reader.replies, strict=True)}
        state.outcomes = outcomes
        by_name = {o.name: o for o in outcomes}
        pool = []
        for group in self.groups:
            blocks = {s.name: by_name[s.name].candidates for s in group.sources}
            if len(group.sources) == 1:
                pool.append(next(iter(blocks.values())).take(slice(0, group.size)))
            else:
                pool.append(proportional(blocks, {s.name: s.config.cap for s in group.sources}, group.size))
        state.candidates = CandidateBlock.concat(pool)
        for o in outcomes:
            if o.degraded:
                state.degraded[f"sources.{o.name}"] = o.status

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.candidates = CandidateBlock.empty()


def proportional(blocks: dict[str, CandidateBlock], weights: dict[str, float], size: int) -> CandidateBlock:
    """Up to `size` distinct posts: each block's best, in proportion to its weight; shares a block
    cannot fill (it ran out, or its posts were already taken) go to the others, in order."""
    total = sum(weights[n] for n in blocks if len(blocks[n])) or 1.0
    quota = {n: int(size * weights[n] / total) for n in blocks}
    taken: list[CandidateBlock] = []
    taken_posts = [np.zeros(0, dtype=np.int64)]
    pos = dict.fromkeys(blocks, 0)

    def take(name: str, want: int) -> None:
        block, i = blocks[name], pos[name]
        if want <= 0 or i >= len(block):
            return
        rest = block.post[i:]
        # trending and popular share many posts: a post already taken is passed over
        fresh = np.flatnonzero(first_occurrences(rest) & ~np.isin(rest, np.concatenate(taken_posts)))[:want]
        pos[name] = i + int(fresh[-1]) + 1 if len(fresh) == want else len(block)
        got = block.take(fresh + i)
        taken.append(got)
        taken_posts.append(got.post)

    for name in blocks:
        take(name, quota[name])
    for name in blocks:  # hand the unused shares to blocks that have more
        take(name, size - sum(len(b) for b in taken))
    return CandidateBlock.concat(taken)
