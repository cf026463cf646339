"""What every filter is, and how a chain of them runs with one Redis round trip.

A filter is a small class with a `name`, whether it `fails_closed`, and three steps:
- `prepare(pipe, viewer_id, candidates)` queues the Redis reads it needs on a shared pipeline
  (nothing for filters that need no state, e.g. own posts, max age) and says how many;
- `decode(candidates, replies)` turns its replies into its state (e.g. the set of deleted ids);
  it is not called when Redis failed, and `apply` then gets `state=None`;
- `apply(viewer_id, candidates, state, now_ms)` returns a `FilterResult`: kept candidates, in
  input order, and removed ones with the reason.
`FilterChain` runs every filter's reads in a single pipeline, then applies them in order, cheapest
first, and counts removals per reason so totals reconcile (kept + removed = input).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, Protocol

import redis

from candidate_gen.records import Candidate


@dataclass(frozen=True)
class FilterResult:
    kept: list[Candidate]
    removed: list[tuple[Candidate, str]] = field(default_factory=list)


class CandidateFilter(Protocol):
    name: str
    fails_closed: bool  # with state=None, `apply` removes what it cannot clear (privacy)

    def prepare(self, pipe: Any, viewer_id: int, candidates: list[Candidate]) -> int:
        """Queue reads on `pipe`; return how many commands were queued."""
        ...

    def decode(self, candidates: list[Candidate], replies: list[Any]) -> Any: ...

    def apply(
        self, viewer_id: int, candidates: list[Candidate], state: Any, now_ms: int
    ) -> FilterResult: ...


def split(candidates: list[Candidate], drop: list[bool], reason: str) -> FilterResult:
    """Kept / removed-with-reason from a boolean mask aligned with `candidates`."""
    drop = list(drop)
    if len(drop) != len(candidates):
        raise ValueError(f"mask of {len(drop)} for {len(candidates)} candidates")
    if not any(drop):  # the common case; compress keeps the rest in C (the service filters ~1,000)
        return FilterResult(list(candidates), [])
    kept = list(compress(candidates, [not d for d in drop]))
    return FilterResult(kept, [(c, reason) for c in compress(candidates, drop)])


@dataclass
class ChainResult:
    kept: list[Candidate]
    removed: list[tuple[Candidate, str]]
    counts: Counter  # reason -> number removed
    degraded: list[str]  # fail-closed filters whose state could not be read (they removed what they could not clear)
    retries: int = 0  # reads tried again after a Redis error

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

    def run(self, viewer_id: int, candidates: list[Candidate], now_ms: int,
            time_left_ms: Callable[[], float] | None = None) -> ChainResult:
        if not candidates:  # nothing to decide (and Redis refuses empty member lists)
            return ChainResult([], [], Counter(), [])
        states: list[Any] | None = None
        attempt = 0
        while states is None and attempt < self.attempts:
            if attempt >= 2 and (time_left_ms is None or time_left_ms() <= 0):
                break  # the second try is unconditional, later ones need budget
            attempt += 1
            try:
                states = self._read_states(self.client if attempt == 1 else self.retry_client, viewer_id, candidates)
            except redis.RedisError:
                continue
        degraded: list[str] = []
        if states is None:
            # No state: each filter decides (privacy filters fail closed, the seen filter open).
            states = [None] * len(self.filters)
            degraded = [f.name for f in self.filters if f.fails_closed]
        kept = list(candidates)
        removed: list[tuple[Candidate, str]] = []
        for f, state in zip(self.filters, states, strict=True):
            if not kept:
                break
            result = f.apply(viewer_id, kept, state, now_ms)
            kept = result.kept
            removed.extend(result.removed)
        return ChainResult(kept, removed, Counter(r for _, r in removed), degraded, max(attempt - 1, 0))

    def _read_states(self, client: redis.Redis, viewer_id: int, candidates: list[Candidate]) -> list[Any]:
        """Every filter's state from one pipelined round trip (raises redis.RedisError)."""
        pipe = client.pipeline(transaction=False)
        sizes = [f.prepare(pipe, viewer_id, candidates) for f in self.filters]
        flat = pipe.execute() if sum(sizes) else []
        states, at = [], 0
        for f, n in zip(self.filters, sizes, strict=True):
            states.append(f.decode(candidates, flat[at : at + n]))
            at += n
        return states
