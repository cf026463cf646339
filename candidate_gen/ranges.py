"""Newest-first windows of many sorted sets in one Redis call (the request path's fan-in reads).

A Home read pulls every followed celebrity's recent posts; the embedding source reads a few posts
of ~100 authors; the social source the engaged posts of ~50 accounts. As redis-py pipelines that
is one packed command and one parsed reply per key (~10 µs of Python each, ~1 ms a request); as one
script call it is one command and one reply. Like the graph scripts it reads keys it builds from
its arguments' list, so it runs on standalone Redis/Valkey (docs/feed_cache_format.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import redis

_SOURCE = (Path(__file__).with_name("lua") / "ranges.lua").read_text()


class RangeReader:
    def __init__(self, client: redis.Redis):
        self._script = client.register_script(_SOURCE)  # reloaded by redis-py after a restart

    def newest(self, keys: Sequence[str], max_score, min_score, count: int) -> list[list[tuple[bytes, float]]]:
        """Per key, up to `count` (member, score) pairs with min <= score <= max, highest first."""
        if not keys:
            return []
        replies = self._script(keys=list(keys), args=[max_score, min_score, count])
        return [list(zip(r[0::2], map(float, r[1::2]))) for r in replies]
