"""What the stream processor keeps: the real-time feature views, their features and windows, and where
its state lives on the online store's server (`StateKeys`).

The Feast repo (features/feature_repo/definitions.py) declares the views from these names; the
worker computes them. Every window is measured in event time and bucketed (docs/streaming_features.md):

    bucket      minute (ts // 60 s), hour (ts // 3600 s), UTC day (ts // 86400 s)
    as of       A = the entity's latest event time; M, H, D = A's minute, hour and day
    5m / 1h     events whose minute is in (M - 5, M] / (M - 60, M]
    24h         events whose hour is in (H - 24, H]
    today       events whose day is D

Counts are exact at bucket granularity: the 5-minute count covers between 4 and 5 minutes before A,
the 24-hour one between 23 and 24 hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from data.stream.valkey_stream import partition_of
from data.vocabulary import Vocabulary

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000

PREFIX = "loupe:rt"  # the processor's keys on the online store's server (features/streaming/state.py)
POST_VIEW = "post_realtime"
AUTHOR_VIEW = "author_realtime"
PAIR_VIEW = "viewer_author_today"
SEQUENCE_VIEW = "viewer_sequence"
SERVICE = "realtime_v1"  # the numeric views (the sequence is not a model input yet)

POSITIVE, NEGATIVE = "+", "-"  # pseudo-types counted beside the vocabulary's types


class StateKeys:
    """The worker's state keys, each tagged `{<q>}` with the stream partition q that owns it: the hash
    tag of the stream's partition key, so a partition's state, marks and dirty set share one slot of
    a Redis Cluster (docs/streaming_features.md, "On a Redis Cluster"). Built here, parsed by
    `parse_state_key`:

        <prefix>:post:{<q>}:<post_id>           q = partition_of(f"{prefix}:post:{post_id}")
        <prefix>:author:{<q>}:<author_id>       q = partition_of(f"{prefix}:author:{author_id}")
        <prefix>:va:{<q>}:<viewer_id>:<author>  q = partition_of(str(viewer_id)), the viewer's partition
        <prefix>:seq:{<q>}:<viewer_id>          the same
        <prefix>:applied:{<q>}:<p>              the applied mark of partition p's entries in q's slot

    partition_of is the stream's own (data.stream.valkey_stream). Posts and authors keep the owner of
    the untagged identity they had before; a viewer's partition is the one its engagements are
    appended to (they are keyed by viewer)."""

    CACHE = 200_000  # owners remembered per kind (forgotten in bulk when full)

    def __init__(self, partitions: int, prefix: str = PREFIX):
        self.partitions, self.prefix = partitions, prefix
        self._owners: dict[str, dict[int, int]] = {"post": {}, "author": {}, "viewer": {}}

    def owner(self, kind: str, entity_id: int) -> int:
        """The partition owning a post's (`post`), an author's (`author`) or a viewer's (`viewer`:
        its pairs and sequence) state."""
        cache = self._owners[kind]
        q = cache.get(entity_id)
        if q is None:
            identity = str(entity_id) if kind == "viewer" else f"{self.prefix}:{kind}:{entity_id}"
            if len(cache) >= self.CACHE:
                cache.clear()
            q = cache[entity_id] = partition_of(identity, self.partitions)
        return q

    def key(self, kind: str, *ids: int) -> tuple[int, str]:
        """(owner, key) of a post (`post`), an author (`author`), a viewer-author pair (`va`) or a
        viewer's sequence (`seq`)."""
        q = self.owner("viewer" if kind in ("va", "seq") else kind, ids[0])
        return q, f"{self.prefix}:{kind}:{{{q}}}:{':'.join(map(str, ids))}"

    def mark(self, owner: int, partition: int) -> str:
        return f"{self.prefix}:applied:{{{owner}}}:{partition}"


def parse_state_key(key: bytes, prefix: str = PREFIX) -> tuple[str, tuple[int, ...]]:
    """A `StateKeys.key` -> (kind, ids)."""
    kind, _tag, *ids = key[len(prefix) + 1:].split(b":")
    return kind.decode(), tuple(map(int, ids))


@dataclass(frozen=True)
class Window:
    name: str  # "5m"
    bucket_ms: int  # MINUTE_MS, HOUR_MS or DAY_MS
    buckets: int  # how many buckets up to and including the as-of one

    @property
    def code(self) -> str:
        return {MINUTE_MS: "m", HOUR_MS: "h", DAY_MS: "d"}[self.bucket_ms]


W5M, W1H, W24H, TODAY = Window("5m", MINUTE_MS, 5), Window("1h", MINUTE_MS, 60), Window("24h", HOUR_MS, 24), \
    Window("today", DAY_MS, 1)
POST_WINDOWS = (W5M, W1H, W24H)
AUTHOR_WINDOWS = (W1H, W24H)
# buckets older than this (per bucket size) can never be in a window again: pruned
RETAIN = {MINUTE_MS: 60, HOUR_MS: 24, DAY_MS: 1}

SEQUENCE_LENGTH = 50  # the viewer's last N engagements, newest first
SEQUENCE_FEATURES = ("recent_post_ids", "recent_author_ids", "recent_types", "recent_ts_ms")


def post_features(types: Sequence[str]) -> list[str]:
    """Per engagement type and window, the positive engagements per window, and the velocity."""
    names = [f"post_rt_{t}_{w.name}" for t in types for w in POST_WINDOWS]
    names += [f"post_rt_engagements_{w.name}" for w in POST_WINDOWS]
    return [*names, "post_rt_velocity"]


AUTHOR_FEATURES = ("author_rt_engagements_1h", "author_rt_engagements_24h", "author_rt_negatives_24h")
PAIR_FEATURES = ("va_rt_positive_today", "va_rt_negative_today", "va_rt_engagements_today")


def engagement_types(vocabulary: Vocabulary) -> tuple[str, ...]:
    """The vocabulary's types, each counted per window for posts."""
    return vocabulary.engagement_names


# --- Trending, kept from the posts' windows (docs/streaming_features.md, "Trending") ----------------
# A post's trending score is its positive engagements per hour, mixed over windows, shrunk for posts
# with few engagements: sum(weight * count / hours) * n / (n + TREND_SMOOTHING), n = its 24 h count;
# posts with fewer than TREND_MIN_EVENTS are not ranked. It is recomputed at each of the post's
# engagements and decays between them with a half-life: the sorted set holds
# log2(score) + last_ms / TREND_HALF_LIFE_MS, so its order at any moment is the order of the decayed
# scores (the decay since a common "now" is the same for every post).
TREND_WINDOWS = ((W5M, 0.5), (W1H, 0.3), (W24H, 0.2))
TREND_SMOOTHING = 5.0
TREND_MIN_EVENTS = 3
TREND_HALF_LIFE_MS = HOUR_MS
TREND_TOP_K = 1000  # posts kept in the global set
TREND_TAG_TOP_K = 200  # ... and in each hashtag's set
TREND_TTL_S = 6 * 3600  # a set no engagement updated for this long is gone: readers fall back to the daily build


def trend_key(prefix: str = PREFIX) -> str:
    return f"{prefix}:trend"


def trend_tag_key(tag: str, prefix: str = PREFIX) -> str:
    return f"{prefix}:trend:tag:{tag}"


def post_tags_key(post_id: int, prefix: str = PREFIX) -> str:
    """The post's hashtags ("a,b"), from its publish event on the stream or the daily trending build."""
    return f"{prefix}:tags:{post_id}"


def trend_score(counts: dict[str, float]) -> float | None:
    """The score from a post's positive engagements per window (`counts`: window name -> count);
    None when it has too few to rank."""
    n = counts[W24H.name]
    if n < TREND_MIN_EVENTS:
        return None
    rate = sum(weight * counts[w.name] * HOUR_MS / (w.bucket_ms * w.buckets) for w, weight in TREND_WINDOWS)
    score = rate * n / (n + TREND_SMOOTHING)
    return score if score > 0 else None


def clean_tag(tag: str) -> str:
    """How a hashtag is spelled in every trending set: trimmed, without '#', lowercased."""
    return tag.strip().lstrip("#").lower()


def tags_value(tags: Iterable[str]) -> str:
    """A post's hashtags as `post_tags_key` holds them, "a,b": cleaned, once each; a tag with a comma
    cannot be held, and is left out."""
    return ",".join(dict.fromkeys(t for t in map(clean_tag, tags) if t and "," not in t))


def parse_tags(value: bytes | None) -> tuple[str, ...]:
    return tuple(value.decode().split(",")) if value else ()
