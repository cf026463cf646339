"""What every candidate source is, and how a request's sources run: step by step, every source's
reads of a step in one Redis round trip, each source with its own switch, cap and timeout, failing
open.

A source is a small class with a `name`, a `config` (SourceConfig) and `plan(request)`: a generator
that yields the `Reads` it needs next (candidate_gen.reads), is sent their `Replies`, and returns a
CandidateBlock, best first (`config.cap` keeps the first). Written so, a source reads as the
sequence of its reads, while `run_sources` batches every source's step into one round trip
(candidate_gen.reads.StepReader): a Home request's five sources cost two round trips, on the
request's own thread. `fetch(source, request, reader)` runs one source alone.

`run_sources` never raises for a source: a disabled, failed or late source yields a
`SourceOutcome` with no candidates and a status the response can report (product-mixer's candidate
pipelines with `FailOpenPolicy`). A source switched off by its data rather than its config (e.g.
no embedding model could be learnt) raises `SourceDisabled` with the reason: reported `disabled`
with that reason, not as a failure. A step whose round trip fails fails the sources waiting on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis

from candidate_gen.block import CandidateBlock
from candidate_gen.config import SourceConfig
from candidate_gen.reads import Reads, Replies, StepReader, run_plan


@dataclass(frozen=True)
class SourceRequest:
    viewer_id: int
    now_ms: int  # request time, epoch ms (sources judge recency against it, never the wall clock)


Plan = Generator[Reads, Replies, CandidateBlock]


class CandidateSource(Protocol):
    name: str
    config: SourceConfig

    def plan(self, request: SourceRequest) -> Plan: ...


OK, DISABLED, TIMEOUT, ERROR = "ok", "disabled", "timeout", "error"


class SourceDisabled(Exception):
    """Raised by a plan when the source has nothing to serve by design (its data switched it
    off): the message is the reason, reported with status `disabled`."""


@dataclass(frozen=True)
class SourceOutcome:
    name: str
    status: str  # ok | disabled | timeout | error
    candidates: CandidateBlock = field(default_factory=CandidateBlock.empty)
    elapsed_ms: float = 0.0
    error: str | None = None  # why it failed, or why it is disabled

    @property
    def degraded(self) -> bool:
        return self.status in (TIMEOUT, ERROR)


def fetch(source: CandidateSource, request: SourceRequest, reader: StepReader) -> CandidateBlock:
    """One source's candidates on its own (tools, tests); raises what its plan raises."""
    return run_plan(source.plan(request), reader)[: source.config.cap]


def run_sources(sources: Sequence[CandidateSource], request: SourceRequest, reader: StepReader,
                late_wait_ms: float = 0.0, patience_ms: float = 0.0,
                clock: Callable[[], float] = time.perf_counter) -> list[SourceOutcome]:
    """Run the enabled sources step by step; one outcome per source, in the given order.

    Between steps, a source past its `timeout_ms` and past `patience_ms` (what the caller's budget
    can still give the sources: the steps are shared, so a slow round trip makes every source
    waiting on it late at once) is dropped (timeout) once another source has delivered candidates;
    while none has, the late ones go on for up to `late_wait_ms` more (an empty pool is an empty
    page, a late one only a slow page). `clock`: seconds (tests inject one)."""
    started = clock()
    outcomes: list[SourceOutcome | None] = [None] * len(sources)
    waiting: dict[int, tuple[Plan, Reads]] = {}

    def elapsed_ms() -> float:
        return (clock() - started) * 1000

    def advance(i: int, plan: Plan, replies: Replies | None) -> None:
        source = sources[i]
        try:
            waiting[i] = (plan, next(plan) if replies is None else plan.send(replies))
        except StopIteration as done:
            outcomes[i] = SourceOutcome(source.name, OK, done.value[: source.config.cap], elapsed_ms())
        except SourceDisabled as exc:
            outcomes[i] = SourceOutcome(source.name, DISABLED, elapsed_ms=elapsed_ms(), error=str(exc))
        except Exception as exc:  # noqa: BLE001 - fail open: any source failure degrades, never raises
            outcomes[i] = SourceOutcome(source.name, ERROR, elapsed_ms=elapsed_ms(), error=_why(exc))

    for i, source in enumerate(sources):
        if not source.config.enabled:
            outcomes[i] = SourceOutcome(source.name, DISABLED)
        else:
            advance(i, source.plan(request), None)
    longest_ms = max((s.config.timeout_ms for s in sources), default=0.0)
    while waiting:
        _drop_late(sources, waiting, outcomes, elapsed_ms(), patience_ms, longest_ms + late_wait_ms)
        if not waiting:
            break
        step = list(waiting.items())
        waiting.clear()
        try:
            replies = reader.execute([reads for _, (_, reads) in step])
        except redis.RedisError as exc:  # the round trip failed: every source waiting on it fails open
            for i, (plan, _) in step:
                plan.close()
                outcomes[i] = SourceOutcome(sources[i].name, ERROR, elapsed_ms=elapsed_ms(), error=_why(exc))
            continue
        for (i, (plan, _)), got in zip(step, replies, strict=True):
            advance(i, plan, got)
    return outcomes  # type: ignore[return-value]  (every source has its outcome by now)


def _drop_late(sources: Sequence[CandidateSource], waiting: dict[int, tuple[Plan, Reads]],
               outcomes: list[SourceOutcome | None], elapsed_ms: float, patience_ms: float,
               wait_limit_ms: float) -> None:
    """Drop the sources past their timeout and the patience, unless none has delivered yet and the
    late wait lasts."""
    delivered = any(o is not None and len(o.candidates) for o in outcomes)
    for i in [i for i in waiting if elapsed_ms > max(sources[i].config.timeout_ms, patience_ms)]:
        if delivered or elapsed_ms > wait_limit_ms:
            plan, _ = waiting.pop(i)
            plan.close()
            outcomes[i] = SourceOutcome(sources[i].name, TIMEOUT, elapsed_ms=elapsed_ms,
                                        error=f"over {round(sources[i].config.timeout_ms, 1)} ms")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
