"""The fan-out worker on the event stream: posts published and deleted, accounts and graph changes
applied to the feed caches as they arrive (docs/event_stream.md, docs/feed_cache_format.md).

One consumer of the group `fanout` reads each batch after first reclaiming what a dead consumer
left pending. It applies the batch with the fan-out worker (every write of which is idempotent, so
an entry delivered twice changes nothing), and then acknowledges it. Each entry ends in one of three
states, and `PollStats` counts them:
- applied: a post, account or graph event;
- ignored: a log the worker has no use for, such as engagements or impressions;
- dead-lettered: a line the worker cannot act on, copied with its reason to the stream's dead-letter
  key.

Ordering: a pair's graph changes share a partition (stream_events.graph_event), and one consumer
applies a partition's entries in order. With more consumers in the group, a follow and its unfollow
could be applied in the wrong order, so this group runs one worker.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from candidate_gen.fanout import FanoutStats, FanoutWorker
from candidate_gen.stream_events import convert, frame
from data.stream.valkey_stream import ValkeyStream

GROUP = "fanout"


@dataclass
class PollStats:
    entries: int = 0
    reclaimed: int = 0  # of `entries`: left pending by a consumer that died
    applied: int = 0
    ignored: int = 0
    dead_lettered: Counter = field(default_factory=Counter)  # reason -> entries
    fanout: FanoutStats | None = None

    @property
    def reconciles(self) -> bool:
        return self.entries == self.applied + self.ignored + sum(self.dead_lettered.values())


class FanoutStreamConsumer:
    def __init__(self, stream: ValkeyStream, worker: FanoutWorker, name: str = "fanout-1",
                 batch: int = 500, reclaim_idle_ms: int = 30_000):
        self.stream = stream
        self.worker = worker
        self.name = name
        self.batch = batch
        self.reclaim_idle_ms = reclaim_idle_ms
        self.on_poll: Callable[[PollStats], object] = lambda stats: None  # e.g. metrics
        stream.create_group(GROUP)  # from the start: every event the stream still holds

    def poll(self, block_ms: int | None = None) -> PollStats:
        """Apply one batch: entries a dead consumer left pending, then new ones (waiting up to
        `block_ms` for one when there are none)."""
        reclaimed = self.stream.reclaim(GROUP, self.name, self.reclaim_idle_ms, self.batch)
        entries = reclaimed + self.stream.read(GROUP, self.name, self.batch, None if reclaimed else block_ms)
        converted = convert(entries)
        stats = PollStats(len(entries), len(reclaimed), len(converted.rows), converted.ignored,
                          Counter(reason for _, reason in converted.unreadable))
        if converted.rows:
            stats.fanout = self.worker.consume(frame(converted))
        self.stream.dead_letter(converted.unreadable)
        self.stream.ack(GROUP, entries)  # after the effects: a crash before this re-delivers the batch
        self.on_poll(stats)
        return stats

    def run(self, stop: threading.Event, block_ms: int = 1_000) -> None:
        while not stop.is_set():
            self.poll(block_ms)
