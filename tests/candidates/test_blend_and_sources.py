"""Blending and the source runner's contract: switch, cap, timeout, fail-open."""

from __future__ import annotations

import threading

from candidate_gen.blend import blend
from candidate_gen.config import SourceConfig
from candidate_gen.records import Candidate
from candidate_gen.sources.base import DISABLED, ERROR, OK, TIMEOUT, SourceRequest, run_sources


def cands(source: str, ids) -> list[Candidate]:
    return [Candidate(i, 1, 0, source) for i in ids]


def test_blend_interleaves_by_weight_and_keeps_a_post_once():
    out = blend({"a": cands("a", range(10)), "b": cands("b", [0, 1, 50, 51])}, {"a": 1, "b": 1}, 8)
    assert [c.post_id for c in out] == [0, 1, 2, 50, 3, 51, 4, 5]
    assert [c.source for c in out][:2] == ["a", "b"]  # post 0 went to a; b's next new post is 1
    heavy = blend({"a": cands("a", range(100)), "b": cands("b", range(100, 200))}, {"a": 3, "b": 1}, 40)
    assert sum(c.source == "a" for c in heavy) == 30


class FakeSource:
    """A source that stalls until released, or raises (the runner's contract, not Redis, is under
    test). Timeouts are generous unless a test stalls the source: a busy machine is not a fault."""

    def __init__(self, name, ids, stall: threading.Event | None = None, fail=False, **conf):
        self.name, self.ids, self.stall, self.fail = name, ids, stall, fail
        self.config = SourceConfig(**{"cap": 3, "timeout_ms": 60_000, **conf})

    def fetch(self, request):
        if self.stall is not None:
            self.stall.wait()
        if self.fail:
            raise ConnectionError("redis down")
        return cands(self.name, self.ids)


def test_run_sources_fails_open_per_source():
    stalled = threading.Event()
    sources = [
        FakeSource("fast", range(10)),
        FakeSource("slow", [1], stall=stalled, timeout_ms=50),
        FakeSource("broken", [1], fail=True),
        FakeSource("off", [1], enabled=False),
    ]
    out = {o.name: o for o in run_sources(sources, SourceRequest(1, 0))}  # returns while slow stalls
    stalled.set()
    assert out["fast"].status == OK and [c.post_id for c in out["fast"].candidates] == [0, 1, 2]  # cap
    assert out["slow"].status == TIMEOUT and out["slow"].candidates == [] and out["slow"].degraded
    assert out["broken"].status == ERROR and "redis down" in out["broken"].error
    assert out["off"].status == DISABLED and not out["off"].degraded
