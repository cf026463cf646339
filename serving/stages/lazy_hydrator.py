"""LazyHydrator: builds the real hydrator on first use and again after a failure (at most every
`retry_s`), so a service started while the feature store or its registry is down still answers
(heuristic scores, `hydrate` degraded) and recovers by itself when they come back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from serving.pipeline import FeedQuery, FeedState

logger = logging.getLogger(__name__)


class LazyHydrator:
    name = "hydrate"

    def __init__(self, factory: Callable[[], object], retry_s: float = 5.0):
        self.factory, self.retry_s = factory, retry_s
        self._inner = None
        self._next_try = 0.0
        self._lock = threading.Lock()

    def _get(self):
        if self._inner is None and time.monotonic() >= self._next_try and self._lock.acquire(blocking=False):
            try:
                self._inner = self.factory()
            except Exception:  # the feature store is down: degrade, retry later
                logger.exception("building the feature hydrator failed; retrying in %.0f s", self.retry_s)
                self._next_try = time.monotonic() + self.retry_s
            finally:
                self._lock.release()
        return self._inner

    def connect(self) -> bool:
        """Try to build the hydrator now (startup); False: it will be retried on requests."""
        return self._get() is not None

    def run(self, query: FeedQuery, state: FeedState) -> None:
        inner = self._get()
        if inner is None:
            if state.candidates:
                state.degraded[self.name] = "feature store unavailable"
            return
        inner.run(query, state)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.features = None
