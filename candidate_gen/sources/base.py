"""What every candidate source is, and how a set of them runs: concurrently, each with its own
switch, cap and timeout, failing open.

A source is a small class with a `name`, a `config` (SourceConfig) and `fetch(request)` returning
at most `config.cap` candidates, best first. `run_sources` never raises for a source: a disabled,
failed or slow source yields a `SourceOutcome` with no candidates and a status the response can
report (product-mixer's candidate pipelines with `FailOpenPolicy`). A source switched off by its
data rather than its config (e.g. no embedding model could be learnt) raises `SourceDisabled` with
the reason: reported `disabled` with that reason, not as a failure.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Protocol

from candidate_gen.config import SourceConfig
from candidate_gen.records import Candidate


@dataclass(frozen=True)
class SourceRequest:
    viewer_id: int
    now_ms: int  # request time, epoch ms (sources judge recency against it, never the wall clock)


class CandidateSource(Protocol):
    name: str
    config: SourceConfig

    def fetch(self, request: SourceRequest) -> list[Candidate]: ...


OK, DISABLED, TIMEOUT, ERROR = "ok", "disabled", "timeout", "error"


class SourceDisabled(Exception):
    """Raised by `fetch` when the source has nothing to serve by design (its data switched it
    off): the message is the reason, reported with status `disabled`."""


@dataclass(frozen=True)
class SourceOutcome:
    name: str
    status: str  # ok | disabled | timeout | error
    candidates: list[Candidate] = field(default_factory=list)
    elapsed_ms: float = 0.0
    error: str | None = None  # why it failed, or why it is disabled

    @property
    def degraded(self) -> bool:
        return self.status in (TIMEOUT, ERROR)


# One shared pool: sources are I/O-bound (Redis round trips), threads are enough.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="source")


def _timed_fetch(source: CandidateSource, request: SourceRequest) -> tuple[list[Candidate], float]:
    start = time.perf_counter()
    out = source.fetch(request)
    return out[: source.config.cap], (time.perf_counter() - start) * 1000


def run_sources(sources: list[CandidateSource], request: SourceRequest,
                late_wait_ms: float = 0.0) -> list[SourceOutcome]:
    """Run the enabled sources concurrently; one outcome per source, in the given order.

    `late_wait_ms`: when every source came back empty and some were only late (timed out), wait up
    to this much longer for those: an empty pool is an empty page, a late one only a slow page."""
    started = time.perf_counter()
    futures = {
        s.name: _POOL.submit(_timed_fetch, s, request) for s in sources if s.config.enabled
    }
    outcomes = [_outcome(s, futures.get(s.name), started, s.config.timeout_ms) for s in sources]
    late = [i for i, o in enumerate(outcomes) if o.status == TIMEOUT]
    if late_wait_ms > 0 and late and not any(o.candidates for o in outcomes):
        waited_ms = (time.perf_counter() - started) * 1000
        for i in late:  # the same deadline for all: they run side by side
            s = sources[i]
            outcomes[i] = _outcome(s, futures[s.name], started, waited_ms + late_wait_ms)
    for o in outcomes:
        if o.status == TIMEOUT:
            futures[o.name].cancel()
    return outcomes


def _outcome(source: CandidateSource, future, started: float, timeout_ms: float) -> SourceOutcome:
    """The source's outcome once its future finished or `timeout_ms` (from `started`) passed."""
    if future is None:
        return SourceOutcome(source.name, DISABLED)
    left = timeout_ms / 1000 - (time.perf_counter() - started)
    try:
        found, elapsed = future.result(timeout=max(left, 0.0))
        return SourceOutcome(source.name, OK, found, elapsed)
    except SourceDisabled as exc:
        return SourceOutcome(source.name, DISABLED, [], (time.perf_counter() - started) * 1000, str(exc))
    except FutureTimeout:
        waited = (time.perf_counter() - started) * 1000
        return SourceOutcome(source.name, TIMEOUT, [], waited, f"over {round(timeout_ms, 1)} ms")
    except Exception as exc:  # noqa: BLE001 - fail open: any source failure degrades, never raises
        waited = (time.perf_counter() - started) * 1000
        return SourceOutcome(source.name, ERROR, [], waited, f"{type(exc).__name__}: {exc}")
