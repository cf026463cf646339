"""The stream processor's state on the online store's server, and the features computed from it.

Keys (`<prefix>` is `loupe:rt`; docs/streaming_features.md):

    <prefix>:post:<post_id>            HASH  bucket counts `<token>|<m|h|d>|<bucket>`, `last`, `author`
    <prefix>:author:<author_id>        HASH  the same, for the author's posts
    <prefix>:va:<viewer_id>:<author>   HASH  the same, for one viewer's engagements with one author
    <prefix>:viewer:<viewer_id>        HASH  `last`
    <prefix>:seq:<viewer_id>           LIST  "post,author,type,ts_ms", newest first, SEQUENCE_LENGTH long
    <prefix>:applied:{<p>}             STRING the id of the last stream entry of partition p applied
    <prefix>:dirty:{<p>}               SET   post and author state keys of partition p whose rows are due
    <prefix>:claimed:{<p>}             SET   the same, claimed by p's owner, until their rows are written
    <prefix>:tags:<post_id>            STRING the post's hashtags, "a,b" (its publish event, or the daily build)
    <prefix>:trend, <prefix>:trend:tag:<tag>   ZSET  trending posts, global and per hashtag (spec.trend_score)

A token is an engagement type, `+` (positive: a value-model head other than the negative one), `-`
(negative) or `*` (any). `last` is the entity's latest event time (ms): the windows' as-of time.
State keys expire STATE_TTL_S after their last change: by then every window of theirs is empty.

Every entity's online row has one writer, so a row computed from an older state never lands over
a newer one without a check per row. Engagements are keyed by viewer: the owner of the viewer's
partition is the only worker that changes a viewer's or a viewer-author pair's state, and writes
their rows from what its apply script returned. Posts and authors are changed by every partition's
worker: each is owned by one partition, the stream's own partitioning of its state key
(ValkeyStream.partition_of); the apply script marks it dirty there, and that partition's owner
writes its row from the state it reads when it claims the set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from data import columns as c
from data.vocabulary import Vocabulary
from features.streaming import spec
from features.streaming.rows import EngagementRow
from features.streaming.spec import NEGATIVE, POSITIVE, TODAY, W1H, W24H, Window

STATE_TTL_S = 2 * 24 * 3600
ANY = "*"
FIELD_CACHE = 200_000  # parsed counter fields a Summer keeps (a few MB)

# One chunk of one partition's engagements, in entry-id order and summed per counter by the caller,
# applied with the partition's applied mark in one script: a crash leaves either all of a chunk's
# effects and its mark, or none. A chunk whose last entry is at or below the mark was applied before
# (a re-delivery after a crash): nothing changes. A chunk the mark falls inside returns {-1, mark} and
# the caller sends the entries above it again. Either way the script returns the state of the keys
# asked for (HGETALL, LRANGE): their rows are computed from it, so a re-delivered chunk still gets
# its rows written (a worker may have died between applying and writing).
# KEYS: the mark, the state keys, the sequence lists, the dirty sets.
# ARGV: first id, last id, ttl, sequence length, number of state keys, number of lists;
#       per state key: its newest event time, 1 to return its state (else 0), its post's author ('' for
#       none: kept for the trending sets' members), n, n x (field, increment);
#       per list: n, n items oldest first; per dirty set: n, n members.
# Returns {1 applied | 0 applied before, state..., list...}.
APPLY = """
local function id_of(text)
    local a, b = string.match(text, '^(%d+)-(%d+)$')
    return {tonumber(a), tonumber(b)}
end
local function above(x, y) return x[1] > y[1] or (x[1] == y[1] and x[2] > y[2]) end
local status = 1
local mark = redis.call('GET', KEYS[1])
if mark then
    local m = id_of(mark)
    if not above(id_of(ARGV[2]), m) then status = 0
    elseif not above(id_of(ARGV[1]), m) then return {-1, mark} end
end
local ttl, cap, n, lists = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local i, out = 7, {status}
for k = 2, n + 1 do
    local key, ts, read, author, m = KEYS[k], ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    if status == 1 then
        for f = i + 4, i + 2 + 2 * m, 2 do redis.call('HINCRBY', key, ARGV[f], ARGV[f + 1]) end
        local last = redis.call('HGET', key, 'last')
        if not last or tonumber(ts) > tonumber(last) then redis.call('HSET', key, 'last', ts) end
        if author ~= '' then redis.call('HSETNX', key, 'author', author) end
        redis.call('EXPIRE', key, ttl)
    end
    i = i + 4 + 2 * m
    if read == '1' then out[#out + 1] = redis.call('HGETALL', key) end
end
for k = n + 2, n + 1 + lists do
    local list, m = KEYS[k], tonumber(ARGV[i])
    if status == 1 then
        redis.call('LPUSH', list, unpack(ARGV, i + 1, i + m))
        redis.call('LTRIM', list, 0, cap - 1)
        redis.call('EXPIRE', list, ttl)
    end
    i = i + 1 + m
    out[#out + 1] = redis.call('LRANGE', list, 0, cap - 1)
end
for k = n + 2 + lists, #KEYS do
    local m = tonumber(ARGV[i])
    if status == 1 then redis.call('SADD', KEYS[k], unpack(ARGV, i + 1, i + m)) end
    i = i + 1 + m
end
if status == 1 then redis.call('SET', KEYS[1], ARGV[2]) end
return out
"""


class ChunkEffects:
    """One chunk's effects, summed per state key and counter field: the apply script's arguments, and
    its reply read back into the states asked for."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[str, int]] = {}  # state key -> field -> increment
        self.newest: dict[str, int] = {}  # state key -> its newest event time in the chunk
        self.read: dict[str, bool] = {}  # state key -> whether the script returns its state
        self.author: dict[str, int | str] = {}  # state key -> its post's author ('' for other keys)
        self.lists: dict[str, list[str]] = {}  # sequence list -> items, oldest first
        self.dirty: dict[str, set[str]] = {}  # dirty set -> state keys

    def add(self, key: str, fields: Sequence[str], ts_ms: int, read: bool, author: int | None = None) -> None:
        counters = self.counters.get(key)
        if counters is None:
            counters = self.counters[key] = {}
            self.newest[key] = ts_ms
            self.read[key] = read
            self.author[key] = "" if author is None else author
        elif ts_ms > self.newest[key]:
            self.newest[key] = ts_ms
        for name in fields:
            counters[name] = counters.get(name, 0) + 1

    def push(self, key: str, item: str) -> None:
        self.lists.setdefault(key, []).append(item)

    def mark_dirty(self, dirty_set: str, key: str) -> None:
        self.dirty.setdefault(dirty_set, set()).add(key)

    def script_args(self, mark_key: str, first_id: str, last_id: str) -> tuple[list[str], list]:
        keys = [mark_key, *self.counters, *self.lists, *self.dirty]
        args: list = [first_id, last_id, STATE_TTL_S, spec.SEQUENCE_LENGTH, len(self.counters), len(self.lists)]
        for key, counters in self.counters.items():
            args += [self.newest[key], int(self.read[key]), self.author[key], len(counters)]
            for name, n in counters.items():
                args += [name, n]
        for items in self.lists.values():
            kept = items[-spec.SEQUENCE_LENGTH:]  # only the newest can stay in the list
            args += [len(kept), *kept]
        for members in self.dirty.values():
            args += [len(members), *members]
        return keys, args

    def states(self, reply: list) -> tuple[dict[bytes, Snapshot], dict[bytes, list[bytes]]]:
        """The script's reply after the status: the states asked for, each list's items."""
        asked = [key for key, read in self.read.items() if read]
        states = {key.encode(): Snapshot.parse(r) for key, r in zip(asked, reply[1:1 + len(asked)])}
        return states, {key.encode(): r for key, r in zip(self.lists, reply[1 + len(asked):])}


@dataclass(frozen=True)
class CountedView:
    """A numeric real-time view: which counters of which entity its features sum."""

    view: str
    entity: str  # the state key's kind: post, author, va
    join_keys: tuple[str, ...]  # in the state key's order
    features: tuple[tuple[str, str, Window], ...]  # (feature, token, window), the view's order
    derived: tuple[str, ...] = ()  # computed from the others (velocity)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.features) + self.derived

    def fields_of(self, tokens: Sequence[str], ts_ms: int) -> list[str]:
        """The counter fields one event with these tokens increments."""
        return [f"{t}|{code}|{ts_ms // bucket}" for t in tokens
                for code, bucket in self._codes.get(t, ())]

    @cached_property
    def _codes(self) -> dict[str, list[tuple[str, int]]]:
        codes: dict[str, list[tuple[str, int]]] = {}
        for _, token, window in self.features:
            pair = (window.code, window.bucket_ms)
            if pair not in codes.setdefault(token, []):
                codes[token].append(pair)
        return codes


def counted_views(types: Sequence[str]) -> tuple[CountedView, CountedView, CountedView]:
    post_names = iter(spec.post_features(types))
    post = CountedView(
        spec.POST_VIEW, "post", (c.POST_ID,),
        tuple((next(post_names), t, w) for t in types for w in spec.POST_WINDOWS)
        + tuple((next(post_names), POSITIVE, w) for w in spec.POST_WINDOWS),
        derived=(next(post_names),))
    author = CountedView(spec.AUTHOR_VIEW, "author", (c.AUTHOR_ID,), tuple(zip(
        spec.AUTHOR_FEATURES, (POSITIVE, POSITIVE, NEGATIVE), (W1H, W24H, W24H))))
    pair = CountedView(spec.PAIR_VIEW, "va", (c.VIEWER_ID, c.AUTHOR_ID), tuple(zip(
        spec.PAIR_FEATURES, (POSITIVE, NEGATIVE, ANY), (TODAY, TODAY, TODAY))))
    return post, author, pair


def tokens(row: EngagementRow, vocabulary: Vocabulary) -> list[str]:
    """The counters one engagement adds to: its type, any, and positive or negative."""
    out = [row.type, ANY]
    if vocabulary.engagement_types[row.type].role == "negative":
        out.append(NEGATIVE)
    elif vocabulary.head_of(row.type, row.value) is not None:
        out.append(POSITIVE)
    return out


@dataclass
class Snapshot:
    """An entity's state as the server returned it (`last_ms` 0: no state, e.g. expired)."""

    last_ms: int = 0
    counters: dict[bytes, int] = field(default_factory=dict)
    author: int = 0  # a post's author (0: not a post, or not known)
    tags: tuple[str, ...] = ()  # a post's hashtags, where known (not part of the hash: see RowWriter.claim)

    @classmethod
    def parse(cls, reply: list[bytes] | dict[bytes, bytes]) -> Snapshot:
        """An HGETALL reply: a flat list (RESP2) or a mapping (RESP3)."""
        snap = cls()
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
        for name, value in pairs:
            if name == b"last":
                snap.last_ms = int(value)
            elif name == b"author":
                snap.author = int(value)
            else:
                snap.counters[name] = int(value)
        return snap


class Summer:
    """A view's features from an entity's counters, and the counters no window can reach again."""

    def __init__(self, counted: CountedView):
        self.counted = counted
        self.width = len(counted.names)
        # (token, code) -> [(feature index, window)]
        self.targets: dict[tuple[bytes, bytes], list[tuple[int, Window]]] = {}
        for j, (_, token, window) in enumerate(counted.features):
            self.targets.setdefault((token.encode(), window.code.encode()), []).append((j, window))
        self.buckets = {w.code.encode(): w.bucket_ms for _, _, w in counted.features}
        self.velocity = spec.POST_VIEW == counted.view
        # counter field -> (bucket code, bucket, buckets kept, [(feature index, window buckets)]), or
        # None for a code no window of this view reads. The same fields recur in every hot entity's
        # state each poll: parsed once, forgotten in bulk when the cache is full.
        self._fields: dict[bytes, tuple[bytes, int, int, list[tuple[int, int]]] | None] = {}

    def _field(self, name: bytes) -> tuple[bytes, int, int, list[tuple[int, int]]] | None:
        token, code, bucket = name.split(b"|")
        bucket_ms = self.buckets.get(code)
        parsed = None if bucket_ms is None else (
            code, int(bucket), spec.RETAIN[bucket_ms],
            [(j, window.buckets) for j, window in self.targets.get((token, code), ())])
        if len(self._fields) >= FIELD_CACHE:
            self._fields.clear()
        self._fields[name] = parsed
        return parsed

    def features(self, snap: Snapshot) -> tuple[list[float], list[bytes]]:
        """(the view's features as of the entity's latest event, counter fields to prune)."""
        values = [0.0] * self.width
        prune = []
        at = {code: snap.last_ms // bucket for code, bucket in self.buckets.items()}
        fields = self._fields
        for name, count in snap.counters.items():
            parsed = fields[name] if name in fields else self._field(name)
            if parsed is None:
                continue
            code, bucket, retain, targets = parsed
            age = at[code] - bucket  # in buckets; negative: a bucket past `last` (cannot be)
            if age >= retain:
                prune.append(name)
                continue
            for j, window_buckets in targets:
                if 0 <= age < window_buckets:
                    values[j] += count
        if self.velocity:  # per minute over 5 min, minus per minute over the hour
            values[-1] = values[-4] / 5 - values[-3] / 60
        return values, prune
