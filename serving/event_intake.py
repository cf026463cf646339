"""`POST /v1/events`: a client's engagement events onto the event stream, and `POST /v1/blocks`: its
blocks and mutes (block, unblock, mute, unmute from the feed), each judged on arrival by the rules
ingestion applies to every landing line of its log (data/ingest/line_rules.py: one validator, not
two).

Each event of a batch ends in one of three states, and the response counts each:
    accepted    valid, appended to the stream (durable: on the server's disk), keyed by its viewer (an
                engagement) or its pair (a block or mute: a pair's changes keep their order)
    duplicate   the same event was accepted within [events] dedupe_ttl_s: not appended again (the
                same event_id; for a block or mute, the same pair, action and time: the log's key)
    rejected    the first rule it failed, with its index in the batch (the others still go in)
so a client that got no answer retries the whole batch safely. Validity is judged relative to the
service clock's day, the day the archiver files the event under (data/stream/archiver.py); what
needs the lake (unknown users or posts, an event_id repeated days later) is judged by ingestion,
whose reconcile check counts it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from data import columns as c
from data.contracts import BLOCKS, ENGAGEMENTS, LogContract
from data.days import day_of_ms
from data.ingest.line_rules import MALFORMED, LineRules
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from data.vocabulary import Vocabulary
from serving.clock import Clock
from serving.config import EventsConfig

log = logging.getLogger(__name__)

EVENTS = Counter("loupe_events_total", "Client events sent to /v1/events and /v1/blocks, by log and outcome",
                 ["log", "outcome"])


@dataclass(frozen=True)
class IntakeLog:
    """What the intake needs of a log: its contract, each line's stream key and its dedupe id (from
    the checked values, ids mapped as ingestion maps them)."""

    contract: LogContract
    key: Callable[[tuple], str]
    dedupe_id: Callable[[tuple], str]


def _at(contract: LogContract, *names: str) -> list[int]:
    return [contract.schema.names.index(n) for n in names]


_EVENT_ID, _VIEWER_ID = _at(ENGAGEMENTS, c.EVENT_ID, c.VIEWER_ID)
_BLOCKER, _BLOCKED, _ACTION, _TS = _at(BLOCKS, c.BLOCKER_ID, c.BLOCKED_ID, c.ACTION, c.TS)
LOGS = {
    ENGAGEMENTS.name: IntakeLog(ENGAGEMENTS, lambda v: str(v[_VIEWER_ID]), lambda v: v[_EVENT_ID]),
    BLOCKS.name: IntakeLog(BLOCKS, lambda v: f"{v[_BLOCKER]}:{v[_BLOCKED]}",
                           lambda v: f"blocks:{v[_BLOCKER]}:{v[_BLOCKED]}:{v[_ACTION]}:{v[_TS]}"),
}


class StreamUnavailable(RuntimeError):
    """The event stream did not confirm the batch (down, or not on disk in time): retry it; what was
    appended comes back as duplicates."""


@dataclass
class IntakeResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {index, event_id, reason}


class EventIntake:
    def __init__(self, connect: Callable[[], ValkeyStream], vocabulary: Vocabulary, clock: Clock,
                 config: EventsConfig):
        self._connect = connect
        self._stream: ValkeyStream | None = None
        self.rules = {name: LineRules(spec.contract, vocabulary) for name, spec in LOGS.items()}
        self.clock = clock
        self.config = config

    def accept(self, events: list[Any], log_name: str = ENGAGEMENTS.name) -> IntakeResult:
        """`events`: lines of the log `log_name` (engagements, or blocks), as parsed JSON."""
        spec, rules = LOGS[log_name], self.rules[log_name]
        now_ms = self.clock.now_ms()
        day = day_of_ms(now_ms)
        result, valid, event_ids = IntakeResult(), [], []
        for index, event in enumerate(events):
            # judged as parsed (the line the archiver lands parses back to this very object)
            checked = rules.check_object(event, day) if isinstance(event, dict) else MALFORMED
            if checked.reason is not None:
                event_id = event.get(c.EVENT_ID) if isinstance(event, dict) else None
                result.rejected.append({"index": index, "event_id": None if event_id is None else str(event_id),
                                        "reason": checked.reason})
                continue
            line = json.dumps(event, separators=(",", ":"))
            valid.append(Event(log_name, line, spec.key(checked.values)))
            event_ids.append(spec.dedupe_id(checked.values))
        if valid:
            ids = self._append(valid, event_ids, now_ms)
            result.accepted = sum(i is not None for i in ids)
            result.duplicates = len(ids) - result.accepted
        for outcome, n in (("accepted", result.accepted), ("duplicate", result.duplicates),
                           ("rejected", len(result.rejected))):
            EVENTS.labels(log_name, outcome).inc(n)
        return result

    def _append(self, events: list[Event], event_ids: list[str], now_ms: int) -> list[str | None]:
        try:
            if self._stream is None:
                self._stream = self._connect()
            return self._stream.append_new(events, event_ids, int(self.config.dedupe_ttl_s * 1000), at_ms=now_ms)
        except Exception as exc:  # any stream failure: the caller retries the batch
            self._stream = None  # connect again on the next batch
            log.warning("/v1/events: the event stream failed: %s", exc)
            raise StreamUnavailable(f"the event stream did not take the events ({type(exc).__name__}); "
                                    "retry the batch: accepted events come back as duplicates") from exc
