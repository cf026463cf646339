"""The fan-out worker on the event stream: posts published and deleted, accounts and graph changes
applied to the feed caches as they arrive (docs/event_stream.md, docs/feed_cache_format.md).

Each worker, a consumer of the group `fanout`, reads a batch of its partitions after first
reclaiming what a dead consumer left pending there. It applies the batch with the fan-out worker
(every write of which is idempotent, so an entry delivered twice changes nothing), and then
acknowledges it. Each entry ends in one of three states, and `PollStats` counts them:
- applied: a post, account or graph event, a story published or deleted (candidate_gen/stories.py),
  or an engagement that pushes an author away (the viewer's fatigue, candidate_gen/fatigue.py);
- ignored: what the worker has no use for, such as impressions or the other engagements;
- dead-lettered: a line the worker cannot act on, copied with its reason to the stream's dead-letter
  key.

Ordering: a pair's graph changes share a partition (data/stream/said.py graph_event), and a partition is
applied by one worker at a time, in order. Each worker owns the partitions it is given (all by
default; `python -m candidate_gen fanout-worker --partitions 0,2` and `--partitions 1,3` run two),
and holds a lease on each one (`<prefix>:fanout:owner:{p}`, renewed at every poll). A second worker
asking for an owned partition is refused (`PartitionTaken`). A worker that dies leaves its leases
to lapse after LEASE_S. Its replacement for those partitions then reclaims the batch it left pending
before it reads anything new, so the partition's order holds.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from candidate_gen import events as ev
from candidate_gen import fatigue, integrity, stories
from candidate_gen.fanout import FanoutStats, FanoutWorker, StateLostError
from candidate_gen.stream_events import convert
from data.redis_client import FAILURES, is_outage
from data.stream.leases import PartitionLeases, PartitionTaken
from data.stream.valkey_stream import ValkeyStream

log = logging.getLogger(__name__)

GROUP = "fanout"


@dataclass
class PollStats:
    entries: int = 0
    reclaimed: int = 0  # of `entries`: left pending by a consumer that died
    applied: int = 0
    ignored: int = 0
    dead_lettered: Counter = field(default_factory=Counter)  # reason -> entries
    fanout: FanoutStats | None = None
    push_aways: int = 0  # of `applied`: into viewers' fatigue sets, and reports for the labels
    stories: int = 0  # of `applied`: stories published or deleted (candidate_gen.stories)

    @property
    def reconciles(self) -> bool:
        return self.entries == self.applied + self.ignored + sum(self.dead_lettered.values())


class FanoutStreamConsumer:
    def __init__(self, stream: ValkeyStream, worker: FanoutWorker, name: str = "fanout-1",
                 batch: int = 500, reclaim_idle_ms: int = 0, partitions: Sequence[int] | None = None):
        """`partitions`: the ones this worker owns (None: all). `reclaim_idle_ms`: how long an entry
        must have been pending on another consumer before this one takes it over; 0, since the
        partition's lease says its previous owner is gone."""
        self.stream = stream
        self.worker = worker
        self.name = name
        self.batch = batch
        self.reclaim_idle_ms = reclaim_idle_ms
        self.partitions = list(range(stream.partitions) if partitions is None else partitions)
        self.fatigue = worker.cfg.fatigue
        self.integrity = worker.cfg.integrity
        # the engagements this consumer acts on: fatigue's push-aways, and reports for the labels
        self._push_away_types = (frozenset(self.fatigue.weights) if self.fatigue.enabled else frozenset()) | (
            frozenset({"report"}) if self.integrity.enabled else frozenset())
        self.on_poll: Callable[[PollStats], object] = lambda stats: None  # e.g. metrics
        self._leases = PartitionLeases(stream, GROUP, self.partitions, "fan-out worker")
        stream.create_group(GROUP)  # from the start: every event the stream still holds

    def close(self) -> None:
        """Give the partitions back at once (a worker that dies gives them back after LEASE_S)."""
        self._leases.release()

    def poll(self, block_ms: int | None = None) -> PollStats:
        """Apply one batch of the owned partitions: entries a previous owner left pending, then new
        ones (waiting up to `block_ms` for one when there are none)."""
        self._leases.hold()
        entries, reclaimed = self.stream.next_batch(GROUP, self.name, self.batch, block_ms, self.partitions,
                                                    self.reclaim_idle_ms)
        converted = convert(entries, self._push_away_types)
        stats = PollStats(len(entries), reclaimed,
                          len(converted.rows) + len(converted.push_aways) + len(converted.stories),
                          converted.ignored, Counter(reason for _, reason in converted.unreadable),
                          push_aways=len(converted.push_aways), stories=len(converted.stories))
        if converted.rows:
            stats.fanout = self.worker.consume(ev.frame(converted.rows))
        if converted.stories:  # in stream order; idempotent
            stories.apply(self.worker.client, self.worker.keys, converted.stories)
        if converted.push_aways and self.fatigue.enabled:  # idempotent, as the fan-out's writes are
            fatigue.record(self.worker.client, self.worker.keys, converted.push_aways, self.fatigue)
        if converted.push_aways and self.integrity.enabled:  # a set per post: idempotent too
            integrity.record_reports(self.worker.client, self.worker.keys, converted.push_aways, self.integrity.rules)
        self.stream.dead_letter(converted.unreadable)
        self.stream.ack(GROUP, entries)  # after the effects: a crash before this re-delivers the batch
        self.on_poll(stats)
        return stats

    def run(self, stop: threading.Event, block_ms: int = 1_000, retry_s: float = 1.0) -> None:
        """Poll until `stop`. The stream's or the feed cache's server down or restarting is waited
        out (`retry_s` between tries, warned once per outage): the batch it interrupted was not
        acknowledged, so the next poll reclaims and applies it again (every write is idempotent).
        A partition another worker took over (PartitionTaken), or a feed cache that restarted empty
        (StateLostError: rebuild it), ends the run."""
        down = False
        try:
            while not stop.is_set():
                try:
                    self.poll(block_ms)
                except (*FAILURES, RuntimeError) as exc:
                    if isinstance(exc, PartitionTaken | StateLostError) or not _unavailable(exc):
                        raise
                    if not down:
                        log.warning("fan-out worker %s: a server is unavailable (%s); retrying every %.1f s",
                                    self.name, exc, retry_s)
                    down = True
                    stop.wait(retry_s)
                    continue
                if down:
                    log.warning("fan-out worker %s: servers back, going on", self.name)
                    down = False
        finally:
            self.close()


def _unavailable(exc: BaseException) -> bool:
    """A server down, restarting or slow, directly or as the fan-out worker's give-up's cause (it
    retries Redis errors itself, then raises RuntimeError from the last one)."""
    while exc is not None:
        if is_outage(exc):
            return True
        exc = exc.__cause__
    return False
