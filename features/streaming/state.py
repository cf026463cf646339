"""The stream processor's state on the online store's server, and the features computed from it.

Keys (`<prefix>` is `loupe:rt`; docs/streaming_features.md):

    <prefix>:post:<post_id>            HASH  bucket counts `<token>|<m|h|d>|<bucket>`, `last`, `ver`, `w`
    <prefix>:author:<author_id>        HASH  the same, for the author's posts
    <prefix>:va:<viewer_id>:<author>   HASH  the same, for one viewer's engagements with one author
    <prefix>:viewer:<viewer_id>        HASH  `last`, `ver`, `w`
    <prefix>:seq:<viewer_id>           LIST  "post,author,type,ts_ms", newest first, SEQUENCE_LENGTH long
    <prefix>:applied:{<p>}             STRING the id of the last stream entry of partition p applied

A token is an engagement type, `+` (positive: a value-model head other than the negative one), `-`
(negative) or `*` (any). `last` is the entity's latest event time (ms): the windows' as-of time.
`ver` counts the batches that changed the entity; `w` is the `ver` its online row was written at.
State keys expire STATE_TTL_S after their last change: by then every window of theirs is empty.
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

PREFIX = "loupe:rt"
STATE_TTL_S = 2 * 24 * 3600
ANY = "*"

# One chunk of one partition's engagements, in entry-id order: each event's counters are incremented
# unless its entry id is at or below the partition's applied mark (a re-delivery of an entry already
# applied), and the mark moves to the last entry applied, all in one script: a crash leaves either
# all of a chunk's effects and its mark, or none. Returns how many it applied.
# ARGV: ttl, sequence length, then per event: id, ts, n, n x (key, k, k fields), sequence key, item
APPLY = """
local mark = redis.call('GET', KEYS[1])
local mark_ms, mark_seq = -1, -1
if mark then
    local a, b = string.match(mark, '^(%d+)-(%d+)$')
    mark_ms, mark_seq = tonumber(a), tonumber(b)
end
local ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local i, applied, last_id = 3, 0, nil
local newest, order, lists, list_order = {}, {}, {}, {}
while i <= #ARGV do
    local id, ts, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    i = i + 3
    local a, b = string.match(id, '^(%d+)-(%d+)$')
    a, b = tonumber(a), tonumber(b)
    local fresh = a > mark_ms or (a == mark_ms and b > mark_seq)
    for _ = 1, n do
        local key, k = ARGV[i], tonumber(ARGV[i + 1])
        i = i + 2
        if newest[key] == nil then
            newest[key] = false
            order[#order + 1] = key
        end
        if fresh then
            for f = i, i + k - 1 do redis.call('HINCRBY', key, ARGV[f], 1) end
            if not newest[key] or tonumber(ts) > tonumber(newest[key]) then newest[key] = ts end
        end
        i = i + k
    end
    local list, item = ARGV[i], ARGV[i + 1]
    i = i + 2
    if lists[list] == nil then
        lists[list] = false
        list_order[#list_order + 1] = list
    end
    if fresh then
        redis.call('LPUSH', list, item)
        lists[list] = true
        applied = applied + 1
        last_id = id
        mark_ms, mark_seq = a, b
    end
end
if last_id then redis.call('SET', KEYS[1], last_id) end
for _, key in ipairs(order) do
    local ts = newest[key]
    if ts then
        local last = redis.call('HGET', key, 'last')
        if not last or tonumber(ts) > tonumber(last) then redis.call('HSET', key, 'last', ts) end
        redis.call('HINCRBY', key, 'ver', 1)
        redis.call('EXPIRE', key, ttl)
    end
end
for _, list in ipairs(list_order) do
    if lists[list] then
        redis.call('LTRIM', list, 0, cap - 1)
        redis.call('EXPIRE', list, ttl)
    end
end
return applied
"""

# An entity's online row (Feast's hash fields and the packed record), written only if its state's
# version is newer than the one last written: workers of other partitions update the same post or
# author, and a row computed from an older state must not land over a newer one.
# KEYS: state, Feast's hash, packed key ('' for none); ARGV: version, packed record, HSET pairs...
WRITE_IF_NEWER = """
local written = tonumber(redis.call('HGET', KEYS[1], 'w') or '0')
local version = tonumber(ARGV[1])
if written >= version then return 0 end
redis.call('HSET', KEYS[1], 'w', version)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
return 1
"""


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
    """An entity's state as the apply script returned it."""

    last_ms: int = 0
    version: int = 0
    written: int = 0
    counters: dict[bytes, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, reply: list[bytes] | dict[bytes, bytes]) -> Snapshot:
        """An HGETALL reply: a flat list (RESP2) or a mapping (RESP3)."""
        snap = cls()
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
        for name, value in pairs:
            if name == b"last":
                snap.last_ms = int(value)
            elif name == b"ver":
                snap.version = int(value)
            elif name == b"w":
                snap.written = int(value)
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

    def features(self, snap: Snapshot) -> tuple[list[float], list[bytes]]:
        """(the view's features as of the entity's latest event, counter fields to prune)."""
        values = [0.0] * self.width
        prune = []
        at = {code: snap.last_ms // bucket for code, bucket in self.buckets.items()}
        for name, count in snap.counters.items():
            token, code, bucket = name.split(b"|")
            current = at.get(code)
            if current is None:
                continue
            age = current - int(bucket)  # in buckets; negative: a bucket past `last` (cannot be)
            if age >= spec.RETAIN[self.buckets[code]]:
                prune.append(name)
                continue
            for j, window in self.targets.get((token, code), ()):
                if 0 <= age < window.buckets:
                    values[j] += count
        if self.velocity:  # per minute over 5 min, minus per minute over the hour
            values[-1] = values[-4] / 5 - values[-3] / 60
        return values, prune
