"""What live mode played in a world (`Settings.live_played_file`): when its last play ended, and the
clock speed each day was played at.

The end says which days the next run ingests (pipelines/operations.py `played_days`); the speed is
how much the stream's real delays stretched in a day's event time, which the train/serve skew check
allows for (training/skew.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from data.days import day_of_ms, days_from, iso_ms


@dataclass(frozen=True)
class Played:
    until: str | None = None  # ISO time the last play ended
    speeds: dict[str, float] = field(default_factory=dict)  # day -> the clock's speed it was played at

    @classmethod
    def read(cls, path: Path) -> Played:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(raw.get("until"), {d: float(s) for d, s in raw.get("speeds", {}).items()})

    def speed_of(self, day: str) -> float:
        """The clock's speed `day` was played at; 1 (real time) for a day live mode did not play."""
        return self.speeds.get(day, 1.0)

    @classmethod
    def record(cls, path: Path, start_ms: int, until_ms: int, speed: float) -> Played:
        """The record at `path` with a play from `start_ms` to `until_ms` at `speed` added, written back."""
        days = days_from(day_of_ms(start_ms), day_of_ms(max(start_ms, until_ms - 1)))
        played = cls(iso_ms(until_ms), {**cls.read(path).speeds, **dict.fromkeys(days, speed)})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"until": played.until, "speeds": played.speeds}))
        return played
