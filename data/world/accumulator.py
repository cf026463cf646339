"""What a day's viewer chunks teach the world, gathered for the end-of-day update."""

from __future__ import annotations

import numpy as np

from data.world.util import key_dst, key_src, pair_key, rank_in_groups

HIDE, REPORT = 1, 2  # kinds of negative feedback (`add_negative`)


class DayAccumulator:
    """Filled by `realise.realise_chunk` per chunk; read once the day's chunks are done."""

    def __init__(self):
        self._pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._last: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._posts: list[tuple[np.ndarray, np.ndarray]] = []
        self._neg: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.seen: list[np.ndarray] = []
        self.active: list[np.ndarray] = []

    def add_pairs(self, v, a, w):
        self._pairs.append((v, a, w))

    def add_last_positive(self, v, a, ts):
        self._last.append((v, a, ts))

    def add_post_counts(self, post, count):
        self._posts.append((post, count))

    def add_negative(self, v, a, kind):  # kind: HIDE or REPORT
        self._neg.append((v, a, kind))

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(
            np.concatenate([x[i] for x in self._pairs]) if self._pairs else np.zeros(0)
            for i in range(3)
        )  # type: ignore[return-value]

    def last_positive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(viewer, author, last ts) per pair with a positive engagement today."""
        if not self._last:
            z = np.zeros(0, np.int64)
            return z, z, z
        v, a, ts = (np.concatenate([x[i] for x in self._last]) for i in range(3))
        keys = pair_key(v, a)
        order = np.lexsort((-ts, keys))
        keys, ts = keys[order], ts[order]
        first = rank_in_groups(keys) == 0
        return key_src(keys[first]), key_dst(keys[first]), ts[first]

    def post_counts(self, n_posts: int) -> np.ndarray:
        out = np.zeros(n_posts + 1)
        for post, count in self._posts:
            out += np.bincount(post, weights=count, minlength=n_posts + 1)
        return out

    def negatives(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._neg:
            z = np.zeros(0, np.int64)
            return z, z, z
        return tuple(np.concatenate([x[i] for x in self._neg]).astype(np.int64) for i in range(3))  # type: ignore[return-value]
