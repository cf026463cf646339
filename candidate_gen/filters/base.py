"""What every filter is, and how a chain of them runs with one Redis round trip.

A filter is a small class with a `name`, whether it `fails_closed`, and three steps over the
request's CandidateBlock (candidate_gen.block):
- `prepare(pipe, viewer_id, block)` queues the Redis reads it needs on a shared pipeline
  (nothing for filters that need no state, e.g. own posts, max age) and says how many;
- `decode(block, replies)` turns its replies into its state (e.g. which candidates are deleted);
  it is not called when Redis failed, and `drop` then gets `state=None`;
- `drop(viewer_id, block, state, now_ms)` returns a bool mask over the block: True where the
  candidate goes.
`FilterChain` runs every filter's reads in a single pipeline, then takes the masks in order,
cheapest first: a candidate is removed for the first filter that drops it, and removals are counted
per reason so totals reconcile (kept + removed = input).

Privacy filters fail closed: when their state cannot be read they remove what they cannot clear
(reason `<filter>_unavailable`); the already-seen and mute filters fail open (a repeat is not a
leak, a mute is a preference).
Because failing closed empties a page, a failed read is tried again (`attempts`): the second try
always, later ones only while the caller's `time_left_ms` says its budget lasts. Retries may go
through their own client (`retry_client`) with a longer socket timeout: a reply later than the
first try's timeout is most often a server starved under load, not a dead one, and another try
with the same short timeout fails the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import redis

from candidate_gen.block import CandidateBlock
from candidate_gen.records import Candidate
from data.redis_client import FAILURES


class CandidateFilter(Protocol):
    name: str
    fails_closed: bool  # with state=None, `drop` removes what it cannot clear (privacy)

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        """Queue reads on `pipe`; return how many commands were queued."""
        ...

    def decode(self, block: CandidateBlock, replies: list[Any]) -> Any: ...

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        """bool per candidate: True where it is removed."""
        ...


def flags(reply: Sequence[Any]) -> np.ndarray:
    """A ZMSCORE reply as bool per member: True where the member is in the set."""
    return np.fromiter((s is not None for s in reply), dtype=bool, count=len(reply))


def ids(members: Any) -> np.ndarray:
    """A set's members (ids) as an int64 array."""
    return np.array([int(m) for m in members], dtype=np.int64)


@dataclass
class ChainResult:
    kept: CandidateBlock
    removed: CandidateBlock
    reasons: np.ndarray  # why each removed candidate went (str), aligned with `removed`
    counts: Counter  # reason -> number removed
    degraded: list[str]  # fail-closed filters whose state could not be read (they removed what they could not clear)
    retries: int = 0  # reads tried again after a Redis error
    # filter name -> its decoded state, for a later stage that decides by it (None: unread)
    states: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.kept) + len(self.removed)


class FilterChain:
    """Filters in declared order, their Redis reads batched into one round trip."""

    def __init__(self, client: redis.Redis, filters: list[CandidateFilter], attempts: int = 1,
                 retry_client: redis.Redis | None = None):
        self.client = client
        self.filters = filters
        self.attempts = attempts
        self.retry_client = retry_client or client

    def run(self, viewer_id: int, candidates: CandidateBlock | Sequence[Candidate], now_ms: int,
            time_left_ms: Callable[[], float] | None = None) -> ChainResult:
        """`candidates`: a block (the request path), or rows (tools, tests)."""
        block = candidates if isinstance(candidates, CandidateBlock) else CandidateBlock.of(candidates)
        if not len(block):  # nothing to decide (and Redis refuses empty member lists)
            return ChainResult(block, block, np.zeros(0, dtype=object), Counter(), [])
        states: list[Any] | None = None
        attempt = 0
        while states is None and attempt < self.attempts:
            if attempt >= 2 and (time_left_ms is None or time_left_ms() <= 0):
                break  # the second try is unconditional, later ones need budget
            attempt += 1
            try:
                states = self._read_states(self.client if attempt == 1 else self.retry_client, viewer_id, block)
            except FAILURES:
                continue
        failed = states is None
        if failed:
            # No state: each filter decides (privacy filters fail closed, the seen filter open).
            states = [None] * len(self.filters)
        alive = np.ones(len(block), dtype=bool)
        reason = np.full(len(block), -1, dtype=np.int16)  # index of the filter that removed it
        names = []
        for j, (f, state) in enumerate(zip(self.filters, states, strict=True)):
            names.append(f"{f.name}_unavailable" if failed and f.fails_closed else f.name)
            gone = alive & f.drop(viewer_id, block, state, now_ms)
            reason[gone] = j
            alive &= ~gone
            if not alive.any():
                break
        removed = ~alive
        codes = reason[removed]
        counts = Counter({names[j]: int(n) for j, n in enumerate(np.bincount(codes, minlength=len(names))) if n})
        degraded = [f.name for f in self.filters if f.fails_closed] if failed else []
        return ChainResult(block.take(alive), block.take(removed), np.array(names, dtype=object)[codes], counts,
                           degraded, max(attempt - 1, 0),
                           {f.name: state for f, state in zip(self.filters, states, strict=True)})

    def _read_states(self, client: redis.Redis, viewer_id: int, block: CandidateBlock) -> list[Any]:
        """Every filter's state from one pipelined round trip (raises one of FAILURES)."""
        pipe = client.pipeline(transaction=False)
        sizes = [f.prepare(pipe, viewer_id, block) for f in self.filters]
        flat = pipe.execute() if sum(sizes) else []
        states, at = [], 0
        for f, n in zip(self.filters, sizes, strict=True):
            states.append(f.decode(block, flat[at : at + n]))
            at += n
        return states
