"""Redis keys of a request's entities for one packed view: deduped, integer keys from a cache."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from features.online.layout import PackedViewLayout
from features.online.transport import bulk


class KeyCache(dict):
    """Entity -> Redis key (or its RESP bulk-string form) for all-integer-key views. Bounded.

    Indexed by the id (one join key) or by the row's packed int64 parts (composite keys).
    Ranking requests repeat entities a lot; a dict hit is ~5x cheaper than formatting a key, and
    the keys a request misses (a viewer's first request misses all its viewer_author rows) are
    formatted together (`keys`), without a Python call per key."""

    def __init__(self, layout: PackedViewLayout, resp: bool, limit: int = 200_000):
        super().__init__()
        self.limit = limit
        self.resp = resp
        self.prefix = layout.key_prefix
        self.m = len(layout.join_keys)
        self.template = layout.key_template
        self.unpack = struct.Struct(f"<{self.m}q").unpack
        bits = 63 // self.m
        self.mask = (1 << bits) - 1
        self.shifts = [bits * (self.m - 1 - i) for i in range(self.m)]

    def keys_of(self, entities: list[Any]) -> list[bytes]:
        """The keys of `entities` (ints, or packed bytes of composite rows), in order."""
        found = list(map(self.get, entities))
        if None not in found:
            return found
        missing = list({e: None for e, k in zip(entities, found) if k is None})
        if len(self) + len(missing) > self.limit:
            self.clear()
        self.update(zip(missing, self.build(missing)))
        return list(map(self.__getitem__, entities))

    def build(self, entities: list[Any]) -> list[bytes]:
        if self.m == 1:
            prefix = self.prefix
            keys = [prefix + b"%d" % e for e in entities]
        elif all(isinstance(e, int) for e in entities):  # parts packed `63 // m` bits each, first highest
            packed = np.array(entities, dtype=np.int64)
            parts = [((packed >> sh) & self.mask).tolist() for sh in self.shifts]
            template = self.template
            keys = [template % row for row in zip(*parts)]
        else:  # m x <i8 bytes (unique_entities gives one kind or the other)
            template, unpack = self.template, self.unpack
            keys = [template % unpack(e) for e in entities]
        return list(map(bulk, keys)) if self.resp else keys


def unique_entities(cols: list[np.ndarray]) -> tuple[list[Any], np.ndarray] | None:
    """The distinct entities of all-integer join-key columns, as KeyCache indexes them, and for
    each row the position of its entity; None when a column is not integer (string keys).
    Views keyed by the same columns share this (the post, post_tags and post_realtime views of a
    request dedupe their ~1,000 post ids once)."""
    if not all(c.dtype.kind in "iu" for c in cols):
        return None
    if len(cols) == 1:  # dedupe the ints in numpy
        uniq, inverse = np.unique(cols[0], return_inverse=True)
        return uniq.tolist(), inverse.reshape(-1)
    bits = 63 // len(cols)
    if all(c.size == 0 or (c.min() >= 0 and int(c.max()) < (1 << bits)) for c in cols):
        # composite of small non-negative ints: pack the parts into one int64, dedupe in numpy
        packed = np.zeros(len(cols[0]), dtype=np.int64)
        for c in cols:
            packed = (packed << bits) | c.astype(np.int64)
        uniq, inverse = np.unique(packed, return_inverse=True)
        return uniq.tolist(), inverse.reshape(-1)
    # composite, any int64s: each row's parts as one bytes object, deduped by a dict
    stacked = np.empty((len(cols[0]), len(cols)), dtype=np.int64)
    for i, c in enumerate(cols):
        stacked[:, i] = c
    raws: list[Any] = stacked.view(np.dtype((np.void, 8 * len(cols)))).ravel().tolist()
    index: dict[bytes, int] = {}
    inverse = np.fromiter((index.setdefault(r, len(index)) for r in raws), dtype=np.intp, count=len(raws))
    return list(index), inverse


def distinct_entities(
    cols: list[np.ndarray], layout: PackedViewLayout, key_cache: KeyCache | None, resp: bool,
    entities: tuple[list[Any], np.ndarray] | None = None,
) -> tuple[list[Any], np.ndarray, Callable[[list[Any]], list[bytes]]]:
    """The request's distinct entities for one view, for each row the position of its entity, and
    the function that gives their Redis keys (RESP-encoded if `resp`), in order. `cols` holds the
    view's join-key columns in layout order. Integer keys: the entities as `unique_entities` gives
    them (`entities`, when the caller has it from another view), keys from the view's `key_cache`;
    string keys (`key_cache` None): the keys themselves are the entities."""
    if key_cache is not None:
        found = entities if entities is not None else unique_entities(cols)
        if found is not None:
            return found[0], found[1], key_cache.keys_of
    all_keys = layout.entity_keys(cols)  # string keys (or ints given as Python objects)
    seen: dict[bytes, int] = {}
    inverse = np.fromiter(
        (seen.setdefault(k, len(seen)) for k in all_keys), dtype=np.intp, count=len(all_keys)
    )
    return (list(map(bulk, seen)) if resp else list(seen)), inverse, list
