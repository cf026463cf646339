"""The platform's notion of "now": the wall clock in production; for the simulated world a replay
clock that starts at the world's last day (its logs end on a past day) and may run faster than real
time (live mode plays a day in minutes). Processes that must agree on the time (the ranking service,
the live mode's simulated users) build the same clock from the same settings: the same start, speed
and real-time anchor.
"""

from __future__ import annotations

import time
from datetime import datetime


class Clock:
    """`now_ms()`: epoch milliseconds. `start_ms` None: the wall clock; else `start_ms` at the real
    epoch ms `anchor_ms` (default: now), running on at `speed` simulated ms per real ms."""

    def __init__(self, start_ms: int | None = None, speed: float = 1.0, anchor_ms: int | None = None):
        if speed <= 0:
            raise ValueError(f"a clock's speed is positive, got {speed}")
        self.start_ms, self.speed = start_ms, speed
        self.anchor_ms = int(time.time() * 1000) if anchor_ms is None else anchor_ms

    @classmethod
    def starting_at(cls, iso: str | None, speed: float = 1.0, anchor_ms: int | None = None) -> Clock:
        if not iso:
            return cls()
        start = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
        return cls(start, speed, anchor_ms)

    @classmethod
    def of(cls, settings) -> Clock:
        """The clock of these settings (LOUPE_NOW, LOUPE_CLOCK_SPEED, LOUPE_CLOCK_ANCHOR_MS)."""
        return cls.starting_at(settings.now, settings.clock_speed, settings.clock_anchor_ms)

    def now_ms(self) -> int:
        real = int(time.time() * 1000)
        if self.start_ms is None:
            return real
        return self.start_ms + int((real - self.anchor_ms) * self.speed)
