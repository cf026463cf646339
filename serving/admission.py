"""Admission: does a request run the full pipeline, or the cheap path?

A worker has a few threads and two cores. Past its capacity, requests queue for a thread and then
for the model, and time out in every stage at once: pages come back late, heuristic-ranked, or
empty. Instead (home-mixer's "serve something cheap rather than nothing"), a request that already
waited longer than `max_wait_ms` for its thread, or that finds `max_in_flight` requests already in
the worker and no room within `queue_ms`, is answered by the cheap path
(serving.surfaces.cheap_pipeline) and says so in `degraded: overload`.
The short queue is for the common case of two requests landing on one worker (a client's
keep-alive connections are not spread over the workers by request): the second is served by the
full pipeline right after the first, well inside its budget, rather than cheaply beside it.
Requests on either path count as in flight: the stages hold the GIL, so a full pipeline sharing
the worker with cheap pages overruns its budget (bench-overload measured admitted pipelines at
2-5x the budget, ranked by the heuristic anyway) and slows the cheap pages with it. The cheap
path itself is never refused: it is short and must never wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from serving.config import AdmissionConfig


class Admission:
    def __init__(self, cfg: AdmissionConfig):
        self.cfg = cfg
        self._room = threading.Condition()
        self._in_flight = 0  # requests inside `enter`, on either path

    @contextmanager
    def enter(self, waited_ms: float) -> Iterator[str | None]:
        """Yields None (run the full pipeline) or why the request takes the cheap path; either way
        the request counts as in flight until the block ends."""
        reason: str | None = None
        with self._room:
            if waited_ms > self.cfg.max_wait_ms:
                reason = f"waited {waited_ms:.0f} ms for a worker (limit {self.cfg.max_wait_ms:.0f} ms)"
            else:
                end = time.monotonic() + self.cfg.queue_ms / 1000
                while self._in_flight >= self.cfg.max_in_flight:
                    left = end - time.monotonic()
                    if left <= 0:
                        reason = f"{self._in_flight} requests in flight (limit {self.cfg.max_in_flight})"
                        break
                    self._room.wait(left)
            self._in_flight += 1
        try:
            yield reason
        finally:
            with self._room:
                self._in_flight -= 1
                self._room.notify()

    @property
    def in_flight(self) -> int:
        return self._in_flight
