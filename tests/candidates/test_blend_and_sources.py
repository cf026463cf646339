"""Blending and the source runner's contract: switch, cap, timeout, fail-open."""

from __future__ import annotations

import redis

from candidate_gen.blend import blend
from candidate_gen.reads import StepReader
from candidate_gen.records import Candidate
from candidate_gen.sources.base import DISABLED, ERROR, OK, TIMEOUT, SourceRequest, run_sources
from tests.candidates.helpers import FakeClock, FlakyRedis, StepSource


def cands(source: str, ids) -> list[Candidate]:
    return [Candidate(i, 1, 0, source) for i in ids]


def test_blend_interleaves_by_weight_and_keeps_a_post_once():
    out = blend({"a": cands("a", range(10)), "b": cands("b", [0, 1, 50, 51])}, {"a": 1, "b": 1}, 8)
    assert [c.post_id for c in out] == [0, 1, 2, 50, 3, 51, 4, 5]
    assert [c.source for c in out][:2] == ["a", "b"]  # post 0 went to a; b's next new post is 1
    heavy = blend({"a": cands("a", range(100)), "b": cands("b", range(100, 200))}, {"a": 3, "b": 1}, 40)
    assert sum(c.source == "a" for c in heavy) == 30


def test_run_sources_fails_open_per_source(redis_server):
    clock = FakeClock()
    reader = StepReader(redis.Redis.from_url(redis_server.url))
    sources = [
        StepSource("fast", range(10)),
        StepSource("slow", [1], steps=3, clock=clock, ms_per_step=40, timeout_ms=50),  # late after its 2nd step
        StepSource("broken", [1], fail=True),
        StepSource("off", [1], enabled=False),
    ]
    out = {o.name: o for o in run_sources(sources, SourceRequest(1, 0), reader, clock=clock)}
    assert out["fast"].status == OK and [c.post_id for c in out["fast"].candidates] == [0, 1, 2]  # cap
    assert out["slow"].status == TIMEOUT and out["slow"].candidates == [] and out["slow"].degraded
    assert out["broken"].status == ERROR and "redis down" in out["broken"].error
    assert out["off"].status == DISABLED and not out["off"].degraded


def test_every_source_of_a_step_shares_one_round_trip(redis_server):
    client = FlakyRedis(redis_server.url, fail=0)
    sources = [StepSource(f"s{i}", [i], steps=2) for i in range(5)]
    outcomes = run_sources(sources, SourceRequest(1, 0), StepReader(client))
    assert [o.status for o in outcomes] == [OK] * 5
    assert client.executed == 2  # five sources, two steps each: two pipelines


def test_a_failed_round_trip_fails_the_sources_waiting_on_it_and_no_others(redis_server):
    client = FlakyRedis(redis_server.url, fail=1)  # the first step's round trip times out
    sources = [StepSource("one_step", [1], steps=1), StepSource("two_steps", [2], steps=2),
               StepSource("no_reads", [3], steps=0)]  # e.g. the popular source, from its cache
    outcomes = {o.name: o for o in run_sources(sources, SourceRequest(1, 0), StepReader(client))}
    assert outcomes["one_step"].status == ERROR and "TimeoutError" in outcomes["one_step"].error
    assert outcomes["two_steps"].status == ERROR and client.executed == 1  # not asked for its second step
    assert outcomes["no_reads"].status == OK and [c.post_id for c in outcomes["no_reads"].candidates] == [3]
