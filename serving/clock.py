"""The service's notion of "now": the wall clock in production, a replay clock for the simulated
world (its logs end on a past day; recency, max age and the impression log's day follow the world).
"""

from __future__ import annotations

import time
from datetime import datetime


class Clock:
    """`now_ms()`: epoch milliseconds. `start_ms` None: the wall clock; else time runs on from it."""

    def __init__(self, start_ms: int | None = None):
        self._offset_ms = 0 if start_ms is None else start_ms - int(time.time() * 1000)

    @classmethod
    def starting_at(cls, iso: str | None) -> Clock:
        if not iso:
            return cls()
        return cls(int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000))

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self._offset_ms
