"""The stream processor's state on the online store's server, and the features computed from it.

Keys (`<prefix>` is `loupe:rt`; q is the stream partition owning the key, `{<q>}` its hash tag:
spec.StateKeys; docs/streaming_features.md):

    <prefix>:post:{<q>}:<post_id>          HASH  bucket counts `<token>|<m|h|d>|<bucket>`, `last`, `author`
    <prefix>:author:{<q>}:<author_id>      HASH  the same, for the author's posts
    <prefix>:va:{<q>}:<viewer_id>:<author> HASH  the same, for one viewer's engagements with one author
    <prefix>:seq:{<q>}:<viewer_id>         LIST  "post,author,type,ts_ms", newest first, SEQUENCE_LENGTH long
    <prefix>:applied:{<q>}:<p>             STRING the id of the last entry of partition p applied into q's keys
    <prefix>:dirty:{<q>}                   SET   post and author state keys of partition q whose rows are due
    <prefix>:claimed:{<q>}                 SET   the same, claimed by q's owner, until their rows are written
    <prefix>:tags:<post_id>                STRING the post's hashtags, "a,b" (its publish event, or the daily build)
    <prefix>:trend, <prefix>:trend:tag:<tag>   ZSET  trending posts, global and per hashtag (spec.trend_score)

A token is an engagement type, `+` (positive: a value-model head other than the negative one), `-`
(negative) or `*` (any). `last` is the entity's latest event time (ms): the windows' as-of time.
State keys live at least STATE_TTL_S after their last change: by then every window of theirs is empty.
A counter key's expiry is set when it is created and when its `last` moves into another UTC day, to
STATE_TTL_S plus a day (COUNTER_TTL_S): one EXPIRE per key per day, not one per chunk, which was the
apply script's most frequent call.

Every entity's online row has one writer, so a row computed from an older state never lands over
a newer one without a check per row. Engagements are keyed by viewer: the owner of the viewer's
partition is the only worker that changes a viewer's or a viewer-author pair's state, and writes
their rows from the state it reads after its apply scripts. Posts and authors are changed by every
partition's worker: each is owned by one partition, the stream's own partitioning of its untagged
identity (spec.StateKeys); the apply script of that partition's slice marks it dirty there, and that
partition's owner writes its row from the state it reads when it claims the set.
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
COUNTER_TTL_S = STATE_TTL_S + 24 * 3600  # set once per (key, event day): see the module's docstring
ANY = "*"
ANY_MARK = "*"  # a slice that expects no particular mark (the apply script's `expect`)
FIELD_CACHE = 200_000  # parsed counter fields a Summer keeps (a few MB)

# One slice of a chunk of one partition p's engagements, in entry-id order and summed per counter by
# the caller: the chunk's effects on the keys one partition q owns (its posts' and authors' counters
# and dirty set; for the viewers' partition, p since engagements are keyed by viewer, their pairs and
# sequences too), applied with the mark of (q, p) in one script: every key it takes is in q's slot.
# A crash leaves either all of a slice's effects and its mark, or none. A slice whose chunk's last
# entry is at or below the mark was applied before (a re-delivery after a crash): nothing changes. A
# slice the mark falls inside returns {-1, mark} and the caller sends the chunk's entries above it
# again. `expect` chains the slices a worker sends without waiting for replies: a slice applies only
# if the mark is the id it expects (the last of the previous chunk of p with a slice for q), else it
# returns {-1, mark} and the caller sends it again; '*' expects nothing.
# The script only writes: the states the rows are computed from are read after it with plain
# commands (RowWriter.read), which the server answers without converting every item through Lua (a
# viewer's 50-item sequence per chunk was the largest part of the script's time).
# KEYS: the mark, the state keys, the sequence lists, the dirty set (all of one partition's slot).
# ARGV: the chunk's first id, last id, expect, ttl (COUNTER_TTL_S; a list gets it at each push), sequence length,
#       number of state keys, number of lists;
#       per state key: its newest event time, its post's author ('' for none: kept for the trending
#       sets' members), n, n x (field, increment);
#       per list: n, n items oldest first; per dirty set: n, n members.
# Returns {1} applied, {0} applied before, or {-1, mark}.
APPLY = """
local function id_of(text)
    local a, b = string.match(text, '^(%d+)-(%d+)$')
    return {tonumber(a), tonumber(b)}
end
local function above(x, y) return x[1] > y[1] or (x[1] == y[1] and x[2] > y[2]) end
local mark = redis.call('GET', KEYS[1])
if mark then
    local m = id_of(mark)
    if not above(id_of(ARGV[2]), m) then return {0} end
    if not above(id_of(ARGV[1]), m) then return {-1, mark} end
end
if ARGV[3] ~= '*' and ARGV[3] ~= (mark or '') then return {-1, mark or ''} end
local ttl, cap, n, lists = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local i = 8
for k = 2, n + 1 do
    local key, ts, author, m = KEYS[k], ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    for f = i + 3, i + 1 + 2 * m, 2 do redis.call('HINCRBY', key, ARGV[f], ARGV[f + 1]) end
    local last = redis.call('HGET', key, 'last')
    if not last then  -- a new key: its author (a post's) and its expiry with it
        if author ~= '' then redis.call('HSET', key, 'last', ts, 'author', author)
        else redis.call('HSET', key, 'last', ts) end
        redis.call('EXPIRE', key, ttl)
    elseif tonumber(ts) > tonumber(last) then
        redis.call('HSET', key, 'last', ts)
        if math.floor(tonumber(ts) / 86400000) ~= math.floor(tonumber(last) / 86400000) then
            redis.call('EXPIRE', key, ttl)
        end
    end
    i = i + 3 + 2 * m
end
for k = n + 2, n + 1 + lists do
    local list, m = KEYS[k], tonumber(ARGV[i])
    redis.call('LPUSH', list, unpack(ARGV, i + 1, i + m))
    redis.call('LTRIM', list, 0, cap - 1)
    redis.call('EXPIRE', list, ttl)
    i = i + 1 + m
end
for k = n + 2 + lists, #KEYS do
    local m = tonumber(ARGV[i])
    redis.call('SADD', KEYS[k], unpack(ARGV, i + 1, i + m))
    i = i + 1 + m
end
redis.call('SET', KEYS[1], ARGV[2])
return {1}
"""


class ChunkEffects:
    """One slice's effects, summed per state key and counter field: the apply script's arguments."""

    def __init__(self) -> None:
        self.entries: list[str] = []  # the ids of the entries with an effect here
        self.counters: dict[str, dict[str, int]] = {}  # state key -> field -> increment
        self.newest: dict[str, int] = {}  # state key -> its newest event time in the chunk
        self.author: dict[str, int | str] = {}  # state key -> its post's author ('' for other keys)
        self.lists: dict[str, list[str]] = {}  # sequence list -> items, oldest first
        self.dirty: dict[str, set[str]] = {}  # dirty set -> state keys

    def add(self, key: str, fields: Sequence[str], ts_ms: int, author: int | None = None) -> None:
        counters = self.counters.get(key)
        if counters is None:
            counters = self.counters[key] = {}
            self.newest[key] = ts_ms
            self.author[key] = "" if author is None else author
        elif ts_ms > self.newest[key]:
            self.newest[key] = ts_ms
        for name in fields:
            counters[name] = counters.get(name, 0) + 1

    def push(self, key: str, item: str) -> None:
        self.lists.setdefault(key, []).append(item)

    def mark_dirty(self, dirty_set: str, key: str) -> None:
        self.dirty.setdefault(dirty_set, set()).add(key)

    def script_args(self, mark_key: str, first_id: str, last_id: str,
                    expect: str = ANY_MARK) -> tuple[list[str], list]:
        keys = [mark_key, *self.counters, *self.lists, *self.dirty]
        args: list = [first_id, last_id, expect, COUNTER_TTL_S, spec.SEQUENCE_LENGTH, len(self.counters),
                      len(self.lists)]
        for key, counters in self.counters.items():
            args += [self.newest[key], self.author[key], len(counters)]
            for name, n in counters.items():
                args += [name, n]
        for items in self.lists.values():
            kept = items[-spec.SEQUENCE_LENGTH:]  # only the newest can stay in the list
            args += [len(kept), *kept]
        for members in self.dirty.values():
            args += [len(members), *members]
        return keys, args


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
    tags: tuple[str, ...] = ()  # a post's hashtags, where known (not part of the hash: see RowWriter.read)
    # a viewer's sequence, newest first: (post ids, author ids, types, event times in ms)
    sequence: tuple[list[int], list[int], list[str], list[int]] = ((), (), (), ())

    @classmethod
    def parse(cls, reply: list[bytes] | dict[bytes, bytes]) -> Snapshot:
        """An HGETALL reply: a flat list (RESP2) or a mapping (RESP3)."""
        fields = dict(reply) if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))
        last, author = fields.pop(b"last", 0), fields.pop(b"author", 0)
        return cls(int(last), {name: int(value) for name, value in fields.items()}, int(author))

    @classmethod
    def of_sequence(cls, items: list[bytes]) -> Snapshot:
        """A viewer's state: its sequence list (an LRANGE reply of "post,author,type,ts_ms" items), as
        of the newest event it holds. Parsed as one joined string: a viewer's row is written at each
        poll that names it, and item by item this was most of the row's cost."""
        if not items:
            return cls()
        flat = b",".join(items).decode().split(",")
        ts = list(map(int, flat[3::4]))
        return cls(max(ts), sequence=(list(map(int, flat[0::4])), list(map(int, flat[1::4])), flat[2::4], ts))


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
