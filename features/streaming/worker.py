"""The stream feature worker: engagements off the event stream into the real-time views' online rows.

Each worker is a consumer of the group `features` and owns the partitions it is given (all by
default), holding a lease on each (`<stream prefix>:features:owner:{p}`, renewed at every poll), as
the fan-out worker does (candidate_gen/stream_fanout.py). A poll:
1. reclaims what a previous owner left pending on its partitions, then reads new entries;
2. judges each engagement line by ingestion's line rules (`engagement_row`) and its lateness; a line it cannot count is
   dead-lettered with its reason, another log's entry is ignored;
3. applies the engagements of each partition, in entry order, in chunks sent without waiting for
   each other's replies: a chunk is one server-side script per partition owning keys it changes
   (its slice: every key of one hash slot, so it runs on a Redis Cluster), which adds to the
   counters, marks the posts and authors dirty on that partition, and moves the slice's applied
   mark, so an entry re-delivered after a crash (at or below the mark) is a duplicate, never
   counted twice;
4. claims the posts and authors due on its own partitions (marked by any worker), reads their
   states and those of the viewers and pairs the batch names, and writes their online rows (Feast's
   hash + the packed record), then releases the claim. Each entity has this one writer
   (features/streaming/state.py);
5. dead-letters, then acknowledges the batch.
A crash anywhere leaves the batch pending and the claim held: the next owner of the partition
reclaims both, the mark skips what was applied, and step 4 writes what was applied but not yet written.
Every entry read ends applied, ignored, dead-lettered or duplicate (`PollStats.reconciles`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from feast import FeatureStore
from hiredis import pack_command  # in C, as redis-py packs a command when hiredis is installed

from data.contracts import ENGAGEMENTS, POSTS
from data.redis_client import FAILURES, is_outage
from data.stream.entries import Entry, parse_id
from data.stream.leases import PartitionLeases
from data.stream.valkey_stream import ValkeyStream
from data.vocabulary import Vocabulary, load_vocabulary
from features.online.layout import DEFAULT_NAMESPACE
from features.online.transport import sender_for
from features.streaming import spec
from features.streaming.rows import EngagementRow, PostChange, engagement_row, engagement_rules, post_change, post_rules
from features.streaming.spec import PREFIX, StateKeys
from features.streaming.state import ANY_MARK, APPLY, ChunkEffects, counted_views, tokens
from features.streaming.writer import RowWriter, Written

log = logging.getLogger(__name__)

GROUP = "features"
LATENESS_MS = 3_600_000  # an event counts if it happened at most this long before it reached the stream
FUTURE_MS = 300_000  # ... and at most this long after (a client's clock ahead)
# A poll that finds no partition's batch full is followed by the next one this long after it started,
# not at once: a poll has a cost of its own (its lease, claims, state reads and row writes) and a hot
# post's row is written once per poll whatever number of engagements it got. Without it, the day's
# mix at 5,000 events/s came in polls of ~13 entries, 200 a second per worker, and backlogs built up
# (Kafka's fetch wait and Spark's trigger interval make the same trade). It adds up to this much per
# poll to freshness; a post's row can wait for two (the poll that applies the engagement, then its
# owner's).
LINGER_MS = 50


@dataclass
class PollStats:
    entries: int = 0
    reclaimed: int = 0  # of `entries`: left pending by a previous owner
    full: bool = False  # a partition gave a whole batch: more may be waiting
    applied: int = 0
    duplicates: int = 0  # engagements already applied (re-delivered after a crash)
    posts: int = 0  # posts published or deleted: their hashtags kept, a deleted one out of trending
    ignored: int = 0  # entries of other logs (and posts lines the fan-out worker dead-letters)
    dead_lettered: Counter = field(default_factory=Counter)  # reason -> entries
    written: Written = field(default_factory=Written)

    @property
    def reconciles(self) -> bool:
        return self.entries == (self.applied + self.duplicates + self.posts + self.ignored
                                + sum(self.dead_lettered.values()))


class StreamFeatureWorker:
    def __init__(self, stream: ValkeyStream, store: FeatureStore, *, client: Any = None, name: str = "features-1",
                 batch: int = 500, chunk: int = 100, reclaim_idle_ms: int = 0,
                 partitions: Sequence[int] | None = None, vocabulary: Vocabulary | None = None,
                 lateness_ms: int = LATENESS_MS, future_ms: int = FUTURE_MS, linger_ms: int = LINGER_MS,
                 prefix: str = PREFIX, namespace: str = DEFAULT_NAMESPACE):
        """`client`: the online store's server (default: Feast's own config). `chunk`: engagements per
        apply script; the server runs nothing else meanwhile (~30 µs an engagement here: 100 hold it
        ~3 ms, which the ranking service's reads wait out). `reclaim_idle_ms`: 0, since the
        partition's lease says its previous owner is gone."""
        self.stream = stream
        self.name = name
        self.batch, self.chunk = batch, chunk
        self.reclaim_idle_ms = reclaim_idle_ms
        self.partitions = list(range(stream.partitions) if partitions is None else partitions)
        self.vocabulary = vocabulary or load_vocabulary()
        self.rules = engagement_rules(self.vocabulary)
        self.post_rules = post_rules(self.vocabulary)
        self.lateness_ms, self.future_ms = lateness_ms, future_ms
        self.linger_s = linger_ms / 1000
        self.prefix = prefix
        self.counted = counted_views(spec.engagement_types(self.vocabulary))
        self.rows = RowWriter(store, self.counted, client, prefix=prefix, namespace=namespace)
        self.client = self.rows.client
        self.keys = StateKeys(stream.partitions, prefix)
        self.sender = sender_for(self.client)  # one server's connection, or each cluster node's
        self._apply = self.client.register_script(APPLY)
        self.client.script_load(APPLY)  # on every primary of a cluster; slices are sent by its hash (NOSCRIPT: again)
        self.on_poll: Callable[[PollStats], object] = lambda stats: None  # e.g. metrics
        # "chunk" per chunk sent, then "applied" (all chunks), "claimed", "written", "acked"
        self.on_step: Callable[[str], object] = lambda step: None
        self._leases = PartitionLeases(stream, GROUP, self.partitions, "stream feature worker")
        stream.create_group(GROUP)  # from the start: every event the stream still holds

    def close(self) -> None:
        """Give the partitions back at once (a worker that dies gives them back after LEASE_S)."""
        self._leases.release()

    # --- one batch -------------------------------------------------------------------------------
    def poll(self, block_ms: int | None = None) -> PollStats:
        self._leases.hold()
        entries, reclaimed = self.stream.next_batch(GROUP, self.name, self.batch, block_ms, self.partitions,
                                                    self.reclaim_idle_ms)
        per_partition = Counter(entry.partition for entry in entries)
        stats = PollStats(len(entries), reclaimed, full=max(per_partition.values(), default=0) >= self.batch)
        rejected: list[tuple[Entry, str]] = []
        by_partition: dict[int, list[tuple[Entry, EngagementRow]]] = {}
        posts: list[PostChange] = []
        for entry in entries:
            if entry.log == POSTS.name and (change := post_change(self.post_rules, entry.line, entry.day)):
                posts.append(change)
                stats.posts += 1
                continue
            if entry.log != ENGAGEMENTS.name:
                stats.ignored += 1
                continue
            row = engagement_row(self.rules, entry.line, entry.day)
            if isinstance(row, str):
                rejected.append((entry, row))
            elif row.ts_ms < entry.ms - self.lateness_ms:
                rejected.append((entry, "too_late"))
            elif row.ts_ms > entry.ms + self.future_ms:
                rejected.append((entry, "ts_in_future"))
            else:
                by_partition.setdefault(entry.partition, []).append((entry, row))
        # publications first, so that the rows below place a post in its hashtags' trending sets
        self.rows.post_changes([change for change in posts if not change.deleted])
        named: set[bytes] = set()  # the viewer and pair states the batch names, applied or not
        plan = []
        for p, rows in by_partition.items():
            rows.sort(key=lambda er: parse_id(er[0].id))
            plan += [(p, rows[i:i + self.chunk]) for i in range(0, len(rows), self.chunk)]
        stats.applied = self._apply_chunks(plan, named)
        stats.duplicates = sum(map(len, by_partition.values())) - stats.applied
        self.on_step("applied")
        # and the post and author rows due on this worker's partitions, whichever worker changed them
        due, claimed = self.rows.claim(self.partitions)
        states = self.rows.read(named | due)
        self.on_step("claimed")
        stats.written = self.rows.write(states, release=claimed)
        self.rows.post_changes([change for change in posts if change.deleted])  # after: out of trending
        self.on_step("written")
        stats.dead_lettered.update(reason for _, reason in rejected)
        self.stream.dead_letter(rejected)
        self.stream.ack(GROUP, entries)  # after the effects: a crash before this re-delivers the batch
        self.on_step("acked")
        self.on_poll(stats)
        return stats

    def _apply_chunks(self, plan: list[tuple[int, list[tuple[Entry, EngagementRow]]]], named: set[bytes]) -> int:
        """Every chunk's apply scripts, one per owner slice (state.py), sent before any reply is read
        (on a cluster, each on its node's connection), so the servers run one chunk while the worker
        prepares the next. A partition's slices for one owner after its first are chained (each
        expects the mark at the last id of the previous chunk with a slice for that owner): a slice
        that cannot apply as planned (a previous owner's mark falls inside it, NOSCRIPT, MOVED) fails
        with every later one of its (partition, owner), and those are sent again one by one, in order,
        split at the mark. Returns how many engagements were applied (into at least one slice now);
        adds the viewer and pair states the chunks name to `named`."""
        sent: list[tuple[int, int, list[tuple[Entry, EngagementRow]], list[str]]] = []
        last: dict[tuple[int, int], str] = {}  # (partition, owner) -> the last id of its previous slice
        with self.sender.ahead() as ahead:
            for p, rows in plan:
                first, final = rows[0][0].id, rows[-1][0].id
                for q, effects in self._slices(rows, named).items():
                    keys, args = effects.script_args(self.keys.mark(q, p), first, final, last.get((p, q), ANY_MARK))
                    ahead.send(keys[0].encode(), pack_command(("EVALSHA", self._apply.sha, len(keys), *keys, *args)))
                    last[(p, q)] = final
                    sent.append((p, q, rows, effects.entries))
                ahead.flush()
                self.on_step("chunk")
            replies = ahead.replies()
        applied: set[tuple[int, str]] = set()  # (partition, entry id): ids are a partition's own
        for (p, q, rows, entries), reply in zip(sent, replies, strict=True):
            if isinstance(reply, redis.ResponseError) or reply[0] == -1:  # e.g. NOSCRIPT after a restart
                entries = self._apply_slice(p, q, rows, named)  # in plan order: a partition's in id order
            elif reply[0] != 1:
                continue
            applied.update((p, entry_id) for entry_id in entries)
        return len(applied)

    def _apply_slice(self, partition: int, owner: int, rows: list[tuple[Entry, EngagementRow]],
                     named: set[bytes]) -> list[str]:
        """The apply script of these entries' slice for `owner`, waited for; returns the ids of the
        entries it applied (the others were already, or have no effect there). A slice the mark falls
        inside is split there and each part sent again."""
        effects = self._slices(rows, named).get(owner)
        if effects is None:
            return []
        keys, args = effects.script_args(self.keys.mark(owner, partition), rows[0][0].id, rows[-1][0].id)
        reply = self._apply(keys=keys, args=args)
        if reply[0] == -1:  # the mark falls inside the chunk: the entries up to it were applied before
            mark = parse_id(reply[1].decode())
            before = sum(1 for entry, _ in rows if parse_id(entry.id) <= mark)  # a prefix: rows are in id order
            return (self._apply_slice(partition, owner, rows[:before], named)
                    + self._apply_slice(partition, owner, rows[before:], named))
        return effects.entries if reply[0] == 1 else []

    def _slices(self, rows: list[tuple[Entry, EngagementRow]], named: set[bytes]) -> dict[int, ChunkEffects]:
        """A chunk's effects per partition owning the keys (spec.StateKeys), summed per key and field,
        and the viewer and pair states it names added to `named`, applied or not: a re-delivered
        chunk's rows are written too (its worker may have died between applying and writing). Posts
        and authors are marked dirty on the partition that owns them."""
        post, author, pair = self.counted
        state_key, dirty_key = self.keys.key, self.rows.dirty_key
        slices: dict[int, ChunkEffects] = {}

        def slice_of(q: int, entry_id: str) -> ChunkEffects:
            effects = slices.get(q)
            if effects is None:
                effects = slices[q] = ChunkEffects()
            if not effects.entries or effects.entries[-1] != entry_id:
                effects.entries.append(entry_id)
            return effects

        for entry, row in rows:
            marks = tokens(row, self.vocabulary)
            ts = row.ts_ms
            for kind, entity, fields, writer in (("post", row.post_id, post.fields_of(marks, ts), row.author_id),
                                                 ("author", row.author_id, author.fields_of(marks, ts), None)):
                q, key = state_key(kind, entity)
                effects = slice_of(q, entry.id)
                effects.add(key, fields, ts, author=writer)
                effects.mark_dirty(dirty_key(q), key)
            q, pair_key = state_key("va", row.viewer_id, row.author_id)
            _, sequence_key = state_key("seq", row.viewer_id)
            effects = slice_of(q, entry.id)
            effects.add(pair_key, pair.fields_of(marks, ts), ts)
            effects.push(sequence_key, f"{row.post_id},{row.author_id},{row.type},{ts}")
            named.update((pair_key.encode(), sequence_key.encode()))
        return slices

    def run(self, stop: threading.Event, block_ms: int = 100, retry_s: float = 1.0) -> None:
        """Poll until `stop`. A server down or restarting is waited out (`retry_s` between tries,
        warned once per outage): the interrupted batch was not acknowledged, so the next poll
        reclaims it and the applied mark keeps it from counting twice. A partition another worker
        took over ends the run. `block_ms` bounds how long a post or author row that another worker
        marked due here waits while this worker's own partitions are quiet. A poll that found no
        partition's batch full is followed by the next `linger_ms` after it started (`stop` ends the wait)."""
        down = False
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    if not self.poll(block_ms).full:
                        stop.wait(max(0.0, self.linger_s - (time.monotonic() - started)))
                except FAILURES as exc:
                    if not is_outage(exc):
                        raise
                    if not down:
                        log.warning("stream feature worker %s: a server is unavailable (%s); retrying every "
                                    "%.1f s", self.name, exc, retry_s)
                    down = True
                    stop.wait(retry_s)
                    continue
                if down:
                    log.warning("stream feature worker %s: servers back, going on", self.name)
                    down = False
        finally:
            self.close()
