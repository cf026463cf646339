"""Decoded rows of the views many requests share (a post's, an author's), kept for a short while.

A ranking request's posts and authors are more than half the same as those of the requests just
before it. Keeping their records *decoded*, by entity, spares a request the key, the reply and the
decoding of each one kept: it gathers their rows by position instead.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from features.online.layout import TS_MISSING


class Rows(NamedTuple):
    """Decoded rows of one view: the selected features, their nulls, event time, record found."""

    values: np.ndarray  # (m, k) float32
    missing: np.ndarray  # (m, k) bool
    ts: np.ndarray  # (m,) int64 µs; TS_MISSING where not found
    found: np.ndarray  # (m,) bool

    @classmethod
    def empty(cls, m: int, k: int) -> Rows:
        return cls(np.full((m, k), np.nan, dtype=np.float32), np.ones((m, k), dtype=bool),
                   np.full(m, TS_MISSING, dtype=np.int64), np.zeros(m, dtype=bool))


class KeptRows:
    """One view's rows by entity, for one generation. Rows are appended and never changed, and an
    entity enters `index` only once its row is written, so a position found there always points at
    a written row of the `rows` read after it (a larger copy replaces `rows` whole)."""

    def __init__(self, k: int, capacity: int = 4096):
        self.index: dict[Any, int] = {}
        self.n = 0
        self.rows = Rows.empty(capacity, k)
        self._lock = threading.Lock()

    def positions(self, entities: list[Any]) -> np.ndarray:
        """Each entity's row, -1 where none is kept."""
        return np.fromiter(map(self.index.get, entities, repeat(-1)), dtype=np.intp, count=len(entities))

    def add(self, entities: list[Any], rows: Rows) -> np.ndarray:
        """Keep `rows` (one per entity); their positions."""
        m = len(entities)
        with self._lock:
            start, end = self.n, self.n + m
            if end > len(self.rows.ts):
                self.rows = _grown(self.rows, self.n, max(end, 2 * len(self.rows.ts)))
            for kept, new in zip(self.rows, rows, strict=True):
                kept[start:end] = new
            self.n = end
            self.index.update(zip(entities, range(start, end)))
        return np.arange(start, end, dtype=np.intp)


def _grown(rows: Rows, n: int, capacity: int) -> Rows:
    bigger = Rows.empty(capacity, rows.values.shape[1])
    for new, old in zip(bigger, rows, strict=True):
        new[:n] = old[:n]
    return bigger


class SharedRows:
    """The kept rows of the shared views (name -> feature count), dropped together when their
    generation is `ttl_ms` old (or one view holds `limit` rows): a value is at most that much older
    than Redis's, and a hit costs a dict lookup, no clock. Threads of one process share it; a
    generation is replaced, never cleared in place."""

    def __init__(self, widths: Mapping[str, int], ttl_ms: float, limit: int = 500_000,
                 clock: Callable[[], float] = time.monotonic):
        self.widths, self.ttl_s, self.limit, self.clock = dict(widths), ttl_ms / 1000, limit, clock
        self._born = -math.inf
        self._generation: dict[str, KeptRows] = {}

    def current(self) -> dict[str, KeptRows]:
        now = self.clock()
        generation = self._generation
        if now - self._born >= self.ttl_s or any(kept.n >= self.limit for kept in generation.values()):
            generation = {name: KeptRows(k) for name, k in self.widths.items()}
            self._generation, self._born = generation, now
        return generation
