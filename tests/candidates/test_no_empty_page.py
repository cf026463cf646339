"""Transient slowness must not empty a page, against a real Valkey with the
fault injected: a privacy read that failed is tried again within the request's budget (before, one
30 ms timeout removed every candidate: privacy fails closed), and sources that were only late are
waited for when nothing else came back (before, the pool was empty)."""

from __future__ import annotations

import pytest
import redis

from candidate_gen.filters import default_chain
from candidate_gen.reads import StepReader
from candidate_gen.records import Candidate
from candidate_gen.sources.base import OK, TIMEOUT, SourceRequest, run_sources
from tests.candidates.helpers import HOUR, T0, FakeClock, FlakyRedis, StepSource, fresh_config

POOL = [Candidate(100 + i, 2 + i % 5, T0 - i * 60_000, "trending") for i in range(20)]


@pytest.fixture
def cfg():
    return fresh_config()


def test_a_failed_privacy_read_is_tried_again_and_the_page_keeps_its_posts(redis_server, cfg):
    healthy = default_chain(redis.Redis.from_url(redis_server.url), cfg).run(1, POOL, T0 + HOUR)
    assert len(healthy.kept) == len(POOL) and not healthy.degraded

    before = default_chain(FlakyRedis(redis_server.url, fail=1), cfg).run(1, POOL, T0 + HOUR)
    assert before.kept == [] and before.degraded  # one attempt: one timeout empties the page

    flaky = FlakyRedis(redis_server.url, fail=1)
    after = default_chain(flaky, cfg, attempts=3).run(1, POOL, T0 + HOUR, time_left_ms=lambda: 0.0)
    assert after.kept == healthy.kept and not after.degraded  # the second try needs no budget
    assert after.retries == 1 and flaky.executed == 2


def test_tries_beyond_the_second_need_budget_and_privacy_still_fails_closed(redis_server, cfg):
    spent = FlakyRedis(redis_server.url, fail=2)
    result = default_chain(spent, cfg, attempts=3).run(1, POOL, T0 + HOUR, time_left_ms=lambda: 0.0)
    assert spent.executed == 2 and result.kept == []  # budget spent: no third try, nothing unverified
    assert {"deleted", "blocked", "private"} <= set(result.degraded)

    left = FlakyRedis(redis_server.url, fail=2)
    result = default_chain(left, cfg, attempts=3).run(1, POOL, T0 + HOUR, time_left_ms=lambda: 25.0)
    assert left.executed == 3 and len(result.kept) == len(POOL) and result.retries == 2


def test_late_sources_are_waited_for_when_every_source_came_back_empty(redis_server):
    reader = StepReader(redis.Redis.from_url(redis_server.url))
    clock = FakeClock()
    late = StepSource("late", range(5), steps=2, clock=clock, ms_per_step=200, timeout_ms=50)
    (before,) = run_sources([late], SourceRequest(1, 0), reader, clock=clock)  # no late wait: an empty pool
    assert before.status == TIMEOUT and before.candidates == []

    clock = FakeClock()
    late = StepSource("late", range(5), steps=2, clock=clock, ms_per_step=200, timeout_ms=50)
    (after,) = run_sources([late], SourceRequest(1, 0), reader, late_wait_ms=60_000, clock=clock)
    assert after.status == OK and len(after.candidates) == 3  # its cap


def test_a_late_source_is_not_waited_for_when_another_delivered(redis_server):
    reader = StepReader(redis.Redis.from_url(redis_server.url))
    clock = FakeClock()
    stuck = StepSource("stuck", [1], steps=3, clock=clock, ms_per_step=200, timeout_ms=50)
    fast = StepSource("fast", [2])
    out = {o.name: o for o in run_sources([stuck, fast], SourceRequest(1, 0), reader, late_wait_ms=60_000,
                                          clock=clock)}
    assert out["fast"].status == OK and out["stuck"].status == TIMEOUT


def test_a_retry_waits_longer_than_the_first_try_for_a_starved_server(redis_server, cfg):
    """bench-overload at 16 in flight: privacy reads timed out twice at 50 ms on a CPU-starved box,
    and privacy failing closed emptied the page. The retries go through their own, more patient,
    client. The server is paused for real (CLIENT PAUSE) past both short timeouts."""
    admin = redis.Redis.from_url(redis_server.url)
    quick = redis.Redis.from_url(redis_server.url, socket_timeout=0.05)
    patient_retry = redis.Redis.from_url(redis_server.url, socket_timeout=30)
    healthy = default_chain(admin, cfg).run(1, POOL, T0 + HOUR)

    admin.execute_command("CLIENT", "PAUSE", 2_000, "ALL")
    same = default_chain(quick, cfg, attempts=3).run(1, POOL, T0 + HOUR, time_left_ms=lambda: 0.0)
    assert same.kept == [] and same.retries == 1  # both short tries inside the pause: fails closed
    admin.execute_command("CLIENT", "UNPAUSE")

    admin.execute_command("CLIENT", "PAUSE", 2_000, "ALL")
    retried = default_chain(quick, cfg, attempts=3, retry_client=patient_retry).run(
        1, POOL, T0 + HOUR, time_left_ms=lambda: 0.0)
    assert retried.kept == healthy.kept and not retried.degraded and retried.retries == 1


def test_a_late_source_goes_on_while_the_budget_can_wait_for_it(redis_server):
    """The sources' steps are shared round trips: one slow step makes every source past its timeout
    at once. While the request's budget can still wait (`patience_ms`), none is dropped: a Home page
    without its in-network posts is worse than one a few ms later."""
    reader = StepReader(redis.Redis.from_url(redis_server.url))
    clock = FakeClock()
    slow = StepSource("slow", [1], steps=2, clock=clock, ms_per_step=30, timeout_ms=20)
    fast = StepSource("fast", [2])
    out = {o.name: o for o in run_sources([slow, fast], SourceRequest(1, 0), reader, patience_ms=100, clock=clock)}
    assert out["slow"].status == OK and out["fast"].status == OK

    clock = FakeClock()
    slow = StepSource("slow", [1], steps=2, clock=clock, ms_per_step=30, timeout_ms=20)
    out = {o.name: o for o in run_sources([slow, fast], SourceRequest(1, 0), reader, patience_ms=25, clock=clock)}
    assert out["slow"].status == TIMEOUT  # past both its timeout and the patience, and another delivered
