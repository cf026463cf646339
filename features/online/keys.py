"""Redis keys of a request's entities for one packed view: deduped, integer keys from a cache."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from features.online.layout import PackedViewLayout
from features.online.transport import bulk


class KeyCache(dict):
    """Entity -> Redis key (or its RESP bulk-string form) for all-integer-key views. Bounded.

    Indexed by the id (one join key) or by the row's packed int64 parts (composite keys).
    Ranking requests repeat entities a lot; a dict hit is ~5x cheaper than formatting a key."""

    def __init__(self, layout: PackedViewLayout, resp: bool, limit: int = 200_000):
        super().__init__()
        self.limit = limit
        prefix = layout.key_prefix
        m = len(layout.join_keys)
        if m == 1:
            build = lambda entity_id: prefix + b"%d" % entity_id  # noqa: E731
        else:  # int: parts packed `63 // m` bits each (first part highest); bytes: m x <i8
            unpack = struct.Struct(f"<{m}q").unpack
            template = layout.key_template
            bits = 63 // m
            mask = (1 << bits) - 1
            shifts = [bits * (m - 1 - i) for i in range(m)]

            def build(entity: int | bytes) -> bytes:
                if isinstance(entity, int):
                    return template % tuple((entity >> sh) & mask for sh in shifts)
                return template % unpack(entity)

        self.build = (lambda e: bulk(build(e))) if resp else build

    def __missing__(self, entity: int | bytes) -> bytes:
        if len(self) >= self.limit:
            self.clear()
        item = self[entity] = self.build(entity)
        return item


def unique_keys(
    cols: list[np.ndarray], layout: PackedViewLayout, key_cache: KeyCache | None, resp: bool
) -> tuple[list[bytes], np.ndarray]:
    """Distinct Redis keys (RESP-encoded if `resp`) of the request's entities for one view, and
    for each row the position of its key. `cols` holds the view's join-key columns in layout
    order; integer keys come from the view's `key_cache` (None: the view has string keys)."""
    if key_cache is not None and all(c.dtype.kind in "iu" for c in cols):
        if len(cols) == 1:  # dedupe the ints in numpy, then cache lookups
            uniq, inverse = np.unique(cols[0], return_inverse=True)
            return list(map(key_cache.__getitem__, uniq.tolist())), inverse.reshape(-1)
        bits = 63 // len(cols)
        if all(c.size == 0 or (c.min() >= 0 and int(c.max()) < (1 << bits)) for c in cols):
            # composite of small non-negative ints: pack the parts into one int64, dedupe in numpy
            packed = np.zeros(len(cols[0]), dtype=np.int64)
            for c in cols:
                packed = (packed << bits) | c.astype(np.int64)
            uniq, inverse = np.unique(packed, return_inverse=True)
            return list(map(key_cache.__getitem__, uniq.tolist())), inverse.reshape(-1)
        # composite, any int64s: each row's parts as one bytes object, deduped by a dict
        stacked = np.empty((len(cols[0]), len(cols)), dtype=np.int64)
        for i, c in enumerate(cols):
            stacked[:, i] = c
        raws: list[Any] = stacked.view(np.dtype((np.void, 8 * len(cols)))).ravel().tolist()
        index: dict[bytes, int] = {}
        inverse = np.fromiter(
            (index.setdefault(r, len(index)) for r in raws), dtype=np.intp, count=len(raws)
        )
        return list(map(key_cache.__getitem__, index)), inverse
    all_keys = layout.entity_keys(cols)  # string keys (or ints given as Python objects)
    seen: dict[bytes, int] = {}
    inverse = np.fromiter(
        (seen.setdefault(k, len(seen)) for k in all_keys), dtype=np.intp, count=len(all_keys)
    )
    return (list(map(bulk, seen)) if resp else list(seen)), inverse
