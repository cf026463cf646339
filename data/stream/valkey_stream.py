"""The event stream on Valkey Streams (any Redis 7+ server with an append-only file).

Layout (docs/event_stream.md): `partitions` stream keys `<prefix>:{<p>}` (one hash slot each), an
entry's fields `log` and `line`; `<prefix>:layout` holds the partition count the stream was created
with, so a process configured with another count is refused instead of leaving partitions unread.

On a Redis Cluster (`data.redis_client.connect` gives a cluster client), every command and script
keeps to one hash slot, and reads and durable writes go to each partition's node
(docs/event_stream.md, "On a Redis Cluster").

Guarantees:
- `append` returns only once every server that took its entries has written them to its
  append-only file and fsynced it (WAITAOF): an appended event survives a crash (kill -9) and
  restart of the server. A server (any cluster primary) without an append-only file is refused
  when the stream is opened.
- Consumer groups deliver each entry to one consumer of a group; an entry stays pending until that
  consumer acknowledges it. A consumer that died leaves its entries pending, and `reclaim` hands
  them to a live one: delivery is at least once, so a consumer's effects are idempotent per entry id.
- `trim` removes entries only below both what the archiver has landed and what every consumer group
  still needs (its oldest pending entry, or the next it has not been delivered).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import AskError, MovedError, TryAgainError

from data import redis_client
from data.redis_client import slot_groups
from data.settings import Settings
from data.stream.entries import START, Entry, Event, next_id, parse_id
from data.stream.routing import Routing

PREFIX = "loupe:events"
DEFAULT_PARTITIONS = 4
# On a cluster: how long past its `block_ms` a blocking read waits for a node to answer.
BLOCK_GRACE_S = 5.0
# On a cluster: rounds of a durable write whose node answered MOVED/ASK/TRYAGAIN (it was not run).
REDIRECT_ROUNDS = 3


# XADD at the producer's clock ('' = the server's): id `<ms>-*` (the server numbers entries within
# one ms), at the partition's last id's ms instead when the clock is behind it (another producer's
# clock ran ahead). Returns the id and the ms later entries of the same call take.
_XADD_AT = """
local function xadd_at(key, ms, log, line)
    if ms == '' then return redis.call('XADD', key, '*', 'log', log, 'line', line), ms end
    local ok, id = pcall(redis.call, 'XADD', key, ms .. '-*', 'log', log, 'line', line)
    if ok then return id, ms end
    local info = redis.call('XINFO', 'STREAM', key)
    for j = 1, #info, 2 do
        if info[j] == 'last-generated-id' then ms = string.match(info[j + 1], '^(%d+)') end
    end
    return redis.call('XADD', key, ms .. '-*', 'log', log, 'line', line), ms
end
"""
# KEYS[1] a partition; ARGV: ms, then (log, line) per event.
APPEND_AT = _XADD_AT + """
local ms = ARGV[1]
local ids = {}
for i = 2, #ARGV, 2 do
    ids[#ids + 1], ms = xadd_at(KEYS[1], ms, ARGV[i], ARGV[i + 1])
end
return ids
"""
# KEYS[1] a partition, KEYS[2..] each event's marker (same slot); ARGV: ms, marker ttl in ms, then
# (log, line) per event. An event whose marker exists is not appended (false); else it is, and its
# marker is set to its entry id: check, append and mark are one atomic step.
APPEND_NEW = _XADD_AT + """
local ms = ARGV[1]
local ids = {}
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
        local id
        id, ms = xadd_at(KEYS[1], ms, ARGV[2 * i - 1], ARGV[2 * i])
        redis.call('SET', KEYS[i], id, 'PX', ARGV[2])
        ids[#ids + 1] = id
    else
        ids[#ids + 1] = false
    end
end
return ids
"""


class StreamLayoutError(RuntimeError):
    """The stream exists with another partition count than this process was configured with."""


class NotDurable(RuntimeError):
    """The server cannot guarantee an appended event survives its restart (no append-only file, or
    the fsync did not happen in time)."""


@dataclass(frozen=True)
class GroupLag:
    """Of one consumer group, summed over partitions: entries not yet delivered, and delivered but
    not yet acknowledged."""

    undelivered: int
    pending: int

    @property
    def backlog(self) -> int:
        return self.undelivered + self.pending


class ValkeyStream:
    def __init__(self, client: redis_client.Client, partitions: int = DEFAULT_PARTITIONS, prefix: str = PREFIX,
                 fsync_timeout_ms: int = 5_000):
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.client = client
        self.routing = Routing(client)
        self.cluster = self.routing.cluster
        self.partitions = partitions
        self.prefix = prefix
        self.fsync_timeout_ms = fsync_timeout_ms
        self._require_append_only_file()
        self._claim_layout()
        self._append_at = client.register_script(APPEND_AT)
        self._append_new = client.register_script(APPEND_NEW)

    @classmethod
    def connect(cls, url: str, partitions: int = DEFAULT_PARTITIONS, timeout_s: float | None = None,
                **kw) -> ValkeyStream:
        """`url`: one server, or any node of a Redis Cluster. `timeout_s`: how long a call may wait on
        a server (None: forever; a producer that must not hang on a stalled server gives one longer
        than `fsync_timeout_ms`)."""
        client = redis_client.connect(url, decode_responses=True, socket_timeout=timeout_s,
                                      socket_connect_timeout=timeout_s)
        return cls(client, partitions, **kw)

    @classmethod
    def of(cls, settings: Settings, timeout_s: float | None = 10.0) -> ValkeyStream:
        """The stream of these settings: LOUPE_STREAM_URL, else the embedded server's port."""
        return cls.connect(settings.stream_endpoint, settings.stream_partitions, timeout_s=timeout_s)

    # --- layout --------------------------------------------------------------------------------
    def key(self, partition: int) -> str:
        return f"{self.prefix}:{{{partition}}}"

    @property
    def keys(self) -> list[str]:
        return [self.key(p) for p in range(self.partitions)]

    def partition_of(self, key: str) -> int:
        """The partition of an entity (`partition_of`)."""
        return partition_of(key, self.partitions)

    def _claim_layout(self) -> None:
        layout = f"{self.prefix}:layout"
        self.client.set(layout, self.partitions, nx=True)
        found = int(self.client.get(layout))
        if found != self.partitions:
            raise StreamLayoutError(
                f"the stream {self.prefix} has {found} partitions, this process is configured with "
                f"{self.partitions}: entries in partitions it does not read would never be consumed")

    def _require_append_only_file(self) -> None:
        for name, server in self.routing.servers():
            if str(server.info("persistence").get("aof_enabled")) != "1":
                raise NotDurable(
                    f"{name} writes no append-only file (appendonly no): an acknowledged event would not "
                    "survive its restart. Use servers with appendonly yes (docs/event_stream.md)")

    # --- producing -----------------------------------------------------------------------------
    def _by_partition(self, events: Sequence[Event]) -> dict[int, list[int]]:
        """The indexes of `events` per partition, in order."""
        by_partition: dict[int, list[int]] = {}
        for i, event in enumerate(events):
            by_partition.setdefault(self.partition_of(event.key), []).append(i)
        return by_partition

    def _durably(self, keys: Sequence[str], queue: Callable[[Any, Sequence[int]], object], what: str) -> list:
        """Write durably: `queue(pipe, positions)` queues one write per position `n`, of `keys[n]`,
        in order. One pipeline per server holding the keys, each ending with WAITAOF on the same
        connection (it waits for that connection's writes). Returns the writes' replies once every
        server that took one has fsynced it; NotDurable if one did not in time. A write a cluster
        node did not run because its slot moved or is moving (MOVED, ASK, TRYAGAIN) is sent again
        once the slot map is read again, up to REDIRECT_ROUNDS."""
        replies: list = [None] * len(keys)
        todo: Sequence[int] = range(len(keys))
        for _ in range(REDIRECT_ROUNDS):
            redirected: list[int] = []
            for server, positions in self.routing.by_server(keys, todo):
                pipe = server.pipeline(transaction=False)
                queue(pipe, positions)
                pipe.execute_command("WAITAOF", 1, 0, self.fsync_timeout_ms)
                *got, fsynced = pipe.execute(raise_on_error=not self.cluster)
                if isinstance(fsynced, Exception):
                    raise fsynced
                if int(fsynced[0]) < 1:
                    raise NotDurable(f"{what} but not fsynced within {self.fsync_timeout_ms} ms: they may "
                                     "not survive a server crash")
                if not self.cluster:
                    return got
                for n, reply in zip(positions, got, strict=True):
                    if isinstance(reply, MovedError | AskError | TryAgainError):
                        redirected.append(n)
                    elif isinstance(reply, Exception):
                        raise reply
                    else:
                        replies[n] = reply
            if not redirected:
                return replies
            todo = sorted(redirected)
            self.routing.refresh()
        raise NotDurable(f"{what} but {len(todo)} of them not: their slots were moving between nodes "
                         f"({REDIRECT_ROUNDS} tries)")

    def append(self, events: Sequence[Event], at_ms: int | None = None) -> list[str]:
        """Append `events` (one round trip per server) and return their ids, once they are on disk.

        `at_ms`: the producer's clock (the platform's: the simulated one in live mode), which the
        ids take, never going back within a partition; None: the server's clock."""
        if not events:
            return []
        by_partition = self._by_partition(events)
        ids: list[str] = [""] * len(events)
        what = f"{len(events)} events appended"
        if at_ms is None:  # an XADD per event
            order: list[int] = []
            keys: list[str] = []
            for p, indexes in by_partition.items():
                order += indexes
                keys += [self.key(p)] * len(indexes)

            def queue(pipe, positions: Sequence[int]) -> None:
                for n in positions:
                    event = events[order[n]]
                    pipe.xadd(keys[n], {"log": event.log, "line": event.line})

            for i, entry_id in zip(order, self._durably(keys, queue, what), strict=True):
                ids[i] = entry_id
            return ids
        keys = [self.key(p) for p in by_partition]  # a script per partition
        fields = [[x for i in indexes for x in (events[i].log, events[i].line)] for indexes in by_partition.values()]

        def queue_scripts(pipe, positions: Sequence[int]) -> None:
            for n in positions:
                self._append_at(keys=[keys[n]], args=[int(at_ms), *fields[n]], client=pipe)

        for indexes, assigned in zip(by_partition.values(), self._durably(keys, queue_scripts, what), strict=True):
            for i, entry_id in zip(indexes, assigned, strict=True):
                ids[i] = entry_id
        return ids

    def marker_key(self, partition: int, event_id: str) -> str:
        """An appended event's id, kept for `append_new` (in its partition's slot)."""
        return f"{self.prefix}:seen:{{{partition}}}:{event_id}"

    def append_new(self, events: Sequence[Event], event_ids: Sequence[str], ttl_ms: int,
                   at_ms: int | None = None) -> list[str | None]:
        """Append each event whose `event_ids` entry was not appended in the last `ttl_ms` (nor earlier
        in `events`); return its entry id, or None for a repeat. Once on disk, as `append`: a
        producer's retry of a batch it got no answer for appends only what is missing."""
        if len(event_ids) != len(events):
            raise ValueError(f"{len(events)} events, {len(event_ids)} event ids")
        if not events:
            return []
        by_partition = self._by_partition(events)
        calls = [([self.key(p), *[self.marker_key(p, event_ids[i]) for i in indexes]],
                  ["" if at_ms is None else int(at_ms), int(ttl_ms),
                   *[x for i in indexes for x in (events[i].log, events[i].line)]])
                 for p, indexes in by_partition.items()]

        def queue(pipe, positions: Sequence[int]) -> None:
            for n in positions:
                self._append_new(keys=calls[n][0], args=calls[n][1], client=pipe)

        replies = self._durably([keys[0] for keys, _ in calls], queue, f"{len(events)} events appended")
        ids: list[str | None] = [None] * len(events)
        for indexes, assigned in zip(by_partition.values(), replies, strict=True):
            for i, entry_id in zip(indexes, assigned, strict=True):
                ids[i] = entry_id
        return ids

    @property
    def dead_letter_key(self) -> str:
        return f"{self.prefix}:dead"

    def dead_letter(self, rejected: Sequence[tuple[Entry, str]]) -> None:
        """Copy entries a consumer cannot act on, each with its reason and where it came from, to
        the dead-letter stream (durably, as `append`), before the consumer acknowledges them."""
        if not rejected:
            return

        def queue(pipe, positions: Sequence[int]) -> None:
            for n in positions:
                entry, reason = rejected[n]
                pipe.xadd(self.dead_letter_key, {"log": entry.log, "line": entry.line, "reason": reason,
                                                 "entry": f"{entry.partition}:{entry.id}"})

        self._durably([self.dead_letter_key] * len(rejected), queue, f"{len(rejected)} dead letters")

    def dead_letters(self, count: int = 1000) -> list[dict[str, str]]:
        """The oldest dead letters: log, line, reason, entry (`<partition>:<id>`)."""
        return [fields for _, fields in self.client.xrange(self.dead_letter_key, count=count)]

    # --- consuming -----------------------------------------------------------------------------
    def create_group(self, group: str, start: str = START) -> None:
        """A consumer group on every partition (idempotent); `start`: deliver entries after it
        ('$' for only new ones)."""
        for key in self.keys:
            try:
                self.client.xgroup_create(key, group, id=start, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(self, group: str, consumer: str, count: int = 500, block_ms: int | None = None,
             partitions: Sequence[int] | None = None) -> list[Entry]:
        """New entries for `consumer` of `group`, up to `count` per partition (of `partitions`;
        None: all); they stay pending until acknowledged. `block_ms`: wait that long for one if
        there is none (None: do not wait; 0: forever).

        One XREADGROUP when the partitions share a slot (one server: always). On a cluster, one per
        slot: pipelined (a round trip per node, in parallel), or when blocking, all at once on
        connections of their own, the others unblocked as soon as one answers."""
        chosen = list(range(self.partitions) if partitions is None else partitions)
        keys = [self.key(p) for p in chosen]
        if not keys:
            return []
        slots = [[keys[i] for i in group_of] for group_of in slot_groups(self.client, keys)]
        if len(slots) == 1:
            reply = self._xreadgroup(self.client, group, consumer, slots[0], count, block_ms)
        elif block_ms is None:
            pipe = self.client.pipeline(transaction=False)
            for slot_keys in slots:
                self._xreadgroup(pipe, group, consumer, slot_keys, count, None)
            reply = [item for got in pipe.execute() for item in got or []]
        else:
            reply = self._read_blocking(group, consumer, slots, count, block_ms)
        index = {self.key(p): p for p in chosen}
        return [entry for key, items in reply or [] for entry in _entries(index[key], items)]

    def _xreadgroup(self, client, group: str, consumer: str, keys: list[str], count: int,
                    block_ms: int | None):
        """XREADGROUP of `keys` (one slot) on `client` (or a pipeline)."""
        if not self.cluster:
            return client.xreadgroup(group, consumer, dict.fromkeys(keys, ">"), count=count, block=block_ms)
        return client.execute_command(*_xreadgroup_args(group, consumer, keys, count, block_ms),
                                      **self.routing.target(keys[0]))

    def _read_blocking(self, group: str, consumer: str, slots: list[list[str]], count: int,
                       block_ms: int) -> list:
        """A blocking read of partitions in several slots of a cluster, which no one command can
        wait on: one XREADGROUP BLOCK per slot, at once; the first to answer ends the others."""
        calls = [(keys[0], _xreadgroup_args(group, consumer, keys, count, block_ms)) for keys in slots]
        replies = self.routing.first_of(calls, None if block_ms == 0 else block_ms / 1000 + BLOCK_GRACE_S)
        if any(isinstance(got, MovedError | AskError) for got in replies):
            self.routing.refresh()  # a slot moved: read there next time
        if error := next((got for got in replies if isinstance(got, Exception)
                          and not isinstance(got, MovedError | AskError)), None):
            raise error
        return [item for got in replies if not isinstance(got, Exception) for item in got or []]

    def ack(self, group: str, entries: Iterable[Entry]) -> int:
        """Acknowledge entries `group` has applied; returns how many were pending."""
        by_partition: dict[int, list[str]] = {}
        for entry in entries:
            by_partition.setdefault(entry.partition, []).append(entry.id)
        if not by_partition:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for p, ids in by_partition.items():
            pipe.xack(self.key(p), group, *ids)
        return sum(pipe.execute())

    def reclaim(self, group: str, consumer: str, min_idle_ms: int, count: int = 500,
                partitions: Sequence[int] | None = None) -> list[Entry]:
        """Entries of `group` pending for at least `min_idle_ms` on another consumer (one that died),
        now `consumer`'s: up to `count` per partition (of `partitions`; None: all), oldest first."""
        claimed = []
        for p in range(self.partitions) if partitions is None else partitions:
            cursor, mine = START, []
            while len(mine) < count:
                cursor, items, _deleted = self.client.xautoclaim(self.key(p), group, consumer, min_idle_ms,
                                                                 start_id=cursor, count=count - len(mine))
                mine += _entries(p, items)
                if cursor == START:
                    break
            claimed += mine
        return claimed

    def next_batch(self, group: str, consumer: str, count: int, block_ms: int | None,
                   partitions: Sequence[int] | None = None, min_idle_ms: int = 0) -> tuple[list[Entry], int]:
        """A consumer's next batch: what a dead consumer left pending (`reclaim`) first, then new
        entries (`read`; waiting up to `block_ms` only when nothing was reclaimed). Returns the
        entries and how many of them were reclaimed."""
        reclaimed = self.reclaim(group, consumer, min_idle_ms, count, partitions)
        fresh = self.read(group, consumer, count, None if reclaimed else block_ms, partitions)
        return reclaimed + fresh, len(reclaimed)

    def _groups(self, key: str) -> list[dict]:
        try:
            return self.client.xinfo_groups(key)
        except redis.ResponseError as exc:
            if "no such key" in str(exc).lower():  # a partition nothing was appended to yet
                return []
            raise

    def lags(self) -> dict[str, GroupLag]:
        """Every consumer group's lag, summed over partitions (one XINFO GROUPS per partition)."""
        undelivered: dict[str, int] = {}
        pending: dict[str, int] = {}
        for key in self.keys:
            for info in self._groups(key):
                lag = info.get("lag")
                if lag is None:  # the server cannot tell (entries deleted or trimmed after the group's place)
                    lag = self._undelivered(key, info)
                undelivered[info["name"]] = undelivered.get(info["name"], 0) + int(lag)
                pending[info["name"]] = pending.get(info["name"], 0) + int(info["pending"])
        return {g: GroupLag(undelivered[g], pending[g]) for g in sorted(undelivered)}

    def _undelivered(self, key: str, group: dict) -> int:
        """A group's undelivered entries when XINFO gives no lag: the entries added after its read
        count, O(1), an upper bound (entries deleted since count); else counted past its last
        delivered id, O(backlog) (a group whose read count the server does not know)."""
        read = group.get("entries-read")
        if read is not None:
            added = int(self.client.xinfo_stream(key)["entries-added"])
            return max(0, added - int(read))
        return len(self.client.xrange(key, min=f"({group['last-delivered-id']}"))

    def groups(self) -> list[str]:
        """The consumer groups of the stream (on any partition)."""
        return list(self.lags())

    def lag(self, group: str) -> GroupLag:
        return self.lags().get(group, GroupLag(0, 0))

    # --- reading in order, and trimming (the archiver) -----------------------------------------
    def after(self, partition: int, entry_id: str, count: int) -> list[Entry]:
        """Up to `count` entries of `partition` after `entry_id`, in order (no group involved)."""
        return _entries(partition, self.client.xrange(self.key(partition), min=f"({entry_id}", count=count))

    def server_ms(self, partition: int | None = None) -> int:
        """The clock (epoch ms) of the server holding `partition` (None: the client's, or a cluster's
        default node's): the time the partition's new entry ids start from."""
        server = self.client if partition is None else self.routing.server_of(self.key(partition))
        seconds, micros = server.time()
        return seconds * 1000 + micros // 1000

    def length(self) -> int:
        return sum(self.client.xlen(key) for key in self.keys)

    def _still_needed(self, partition: int) -> str | None:
        """The oldest entry of `partition` some consumer group still needs: its oldest pending one,
        or the next one it has not been delivered. None: no group."""
        key, needed = self.key(partition), []
        for info in self._groups(key):
            # pending when listed may be acknowledged by now (XPENDING: no min); then everything the
            # group was delivered when listed is done, and keeping from there is safe
            oldest = self.client.xpending(key, info["name"])["min"] if int(info["pending"]) else None
            needed.append(oldest if oldest is not None else next_id(info["last-delivered-id"]))
        return min(needed, key=parse_id) if needed else None

    def trim(self, partition: int, archived_up_to: str) -> int:
        """Remove the entries up to `archived_up_to` that no consumer group still needs; returns how
        many were removed."""
        keep_from = next_id(archived_up_to)
        needed = self._still_needed(partition)
        if needed is not None and parse_id(needed) < parse_id(keep_from):
            keep_from = needed
        return self.client.xtrim(self.key(partition), minid=keep_from, approximate=False)


def partition_of(key: str, partitions: int) -> int:
    """The partition of an entity's key among `partitions` (crc32: the same on every process and run)."""
    return zlib.crc32(key.encode()) % partitions


def _xreadgroup_args(group: str, consumer: str, keys: list[str], count: int, block_ms: int | None) -> tuple:
    block = () if block_ms is None else ("BLOCK", block_ms)
    return ("XREADGROUP", "GROUP", group, consumer, "COUNT", count, *block, "STREAMS", *keys, *[">"] * len(keys))


def _entries(partition: int, items) -> list[Entry]:
    # an id whose entry was trimmed while pending comes back without fields: nothing to deliver
    return [Entry(partition, entry_id, fields["log"], fields["line"]) for entry_id, fields in items if fields]
