"""What travels on the event stream.

An `Event` is one line of a landing log, exactly as it would sit in `<log>/<day>/*.jsonl`
(docs/log_contracts.md), and the entity it is about (its partition key: the events of one entity
share a partition). The stream does not judge the line: ingestion does, once the archiver has
landed it, by the same rules as any export's line.

An `Entry` is an event as the stream delivered it. Its id (`<ms>-<seq>`) is given by the server at
append: the arrival time, which names the landing day the archiver files it under.
"""

from __future__ import annotations

from dataclasses import dataclass

from data.contracts import LOG_TYPES
from data.days import day_of_ms

START = "0-0"  # before every entry


def parse_id(entry_id: str) -> tuple[int, int]:
    """'1733250000123-4' -> (1733250000123, 4): ids compare as these tuples, never as text."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def next_id(entry_id: str) -> str:
    """The smallest id after `entry_id`."""
    ms, seq = parse_id(entry_id)
    return f"{ms}-{seq + 1}"


@dataclass(frozen=True, slots=True)
class Event:
    log: str  # a landing log (data.contracts.LOG_TYPES)
    line: str  # one JSON object, as the log's landing files hold it (no line break)
    key: str  # the entity the event is about (e.g. a post id): its partition

    def __post_init__(self) -> None:
        if self.log not in LOG_TYPES:
            raise ValueError(f"unknown log {self.log!r}: one of {LOG_TYPES}")
        if "\n" in self.line or "\r" in self.line:
            raise ValueError("an event's line is one landing line: no line break inside")


@dataclass(frozen=True, slots=True)
class Entry:
    partition: int
    id: str
    log: str
    line: str

    @property
    def ms(self) -> int:
        return parse_id(self.id)[0]

    @property
    def day(self) -> str:
        """The UTC day it arrived on: the landing day it is archived under."""
        return day_of_ms(self.ms)
