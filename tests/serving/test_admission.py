"""Admission (serving.admission): which requests take the cheap path, and the arrival stamp the
budget counts from (serving.api_guard)."""

from __future__ import annotations

import asyncio
import threading
import time

from serving.admission import Admission
from serving.api_guard import ARRIVED, ApiAccess, ApiGuardMiddleware
from serving.config import AdmissionConfig


def test_a_request_that_waited_past_its_limit_takes_the_cheap_path():
    admission = Admission(AdmissionConfig(max_wait_ms=50.0, max_in_flight=2))
    with admission.enter(10.0) as reason:
        assert reason is None and admission.in_flight == 1
    with admission.enter(51.0) as reason:
        assert "waited 51 ms" in reason and admission.in_flight == 1
    assert admission.in_flight == 0


def test_beyond_max_in_flight_requests_take_the_cheap_path_until_one_finishes():
    admission = Admission(AdmissionConfig(max_wait_ms=50.0, max_in_flight=2, queue_ms=0.0))
    with admission.enter(0.0) as first, admission.enter(0.0) as second:
        assert first is None and second is None
        with admission.enter(0.0) as third:
            assert third == "2 requests in flight (limit 2)"
    with admission.enter(0.0) as again:
        assert again is None  # both finished: room again
    assert admission.in_flight == 0


def test_a_request_on_the_cheap_path_counts_as_in_flight():
    """A full pipeline sharing the worker's GIL with cheap pages overruns its budget: it starts only
    when the worker is otherwise idle (max_in_flight 1), whichever path holds the worker."""
    admission = Admission(AdmissionConfig(max_wait_ms=50.0, max_in_flight=1, queue_ms=0.0))
    with admission.enter(80.0) as late:  # waited too long: cheap, and it holds the worker meanwhile
        assert late is not None
        with admission.enter(0.0) as next_one:
            assert next_one == "1 requests in flight (limit 1)"
    with admission.enter(0.0) as idle:
        assert idle is None


def test_a_request_finding_the_worker_full_queues_for_it_and_runs_the_full_pipeline():
    """Two keep-alive connections on one worker: the second request waits for the first to finish
    (within `queue_ms`) and is served by the full pipeline, not cheaply beside it."""
    admission = Admission(AdmissionConfig(max_wait_ms=50.0, max_in_flight=1, queue_ms=600_000.0))
    inside, release, second = threading.Event(), threading.Event(), {}

    def first() -> None:
        with admission.enter(0.0) as reason:
            assert reason is None
            inside.set()
            release.wait()

    holder = threading.Thread(target=first)
    holder.start()
    inside.wait()

    def queued() -> None:
        with admission.enter(0.0) as reason:
            second["reason"] = reason

    waiter = threading.Thread(target=queued)
    waiter.start()
    assert admission.in_flight == 1 and "reason" not in second  # still queued while the first runs
    release.set()
    holder.join()
    waiter.join()
    assert second == {"reason": None} and admission.in_flight == 0


def test_the_guard_stamps_when_the_request_arrived_before_reading_its_body():
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        pass

    guard = ApiGuardMiddleware(app, lambda: ApiAccess("t0ken"))
    before = time.perf_counter()
    scope = {"type": "http", "path": "/v1/feed/home", "method": "POST",
             "headers": [(b"authorization", b"Bearer t0ken"), (b"content-type", b"application/json")]}
    asyncio.run(guard(scope, receive, send))
    assert before <= seen[ARRIVED] <= time.perf_counter()
