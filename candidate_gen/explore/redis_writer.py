"""How the Explore builders write Redis: batched pipelines of sorted-set replacements and scripts.

Lua runs only through `candidate_gen.scripts.Script`: on one server a pipeline holding one checks
on execute that the server has it and loads it if not, so a Valkey that restarted (or flushed its
scripts) in the middle of a build costs one SCRIPT LOAD, not the build. Every script call takes one
key, so a Redis Cluster pipeline routes each to its slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import redis

from candidate_gen.records import member
from candidate_gen.scripts import LUA_DIR, Script

BATCH_COMMANDS = 5_000  # commands per pipeline execute

# Replace a sorted set in one step: DEL, ZADD (in chunks: Lua's unpack has a stack limit), EXPIRE.
# A script runs alone on the server, so a reader sees the old set or the new one, never part of one
# (the same guarantee as filling a temp key and RENAMing it, with one command instead of three).
# KEYS[1] the set; ARGV[1] TTL seconds; ARGV[2..] score, member pairs (none: the set is deleted).
_REPLACE_ZSET = (LUA_DIR / "replace_zset.lua").read_text()


def post_members(post_ids: Iterable[int], author_ids: Iterable[int]) -> list[bytes]:
    posts, authors = np.asarray(post_ids).tolist(), np.asarray(author_ids).tolist()
    return [member(p, a) for p, a in zip(posts, authors, strict=True)]


def zadd_args(members: list[bytes], scores: Iterable[float]) -> list:
    """Flat ZADD arguments: score, member, score, member, ..."""
    flat: list = [None] * (2 * len(members))
    flat[0::2] = np.asarray(scores, dtype="float64").tolist()
    flat[1::2] = members
    return flat


def grouped(keys: np.ndarray) -> Iterator[tuple[Any, int, int]]:
    """(key, start, stop) of each run of equal values in a sorted array."""
    if len(keys) == 0:
        return
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(keys)]))
    yield from zip(keys[starts].tolist(), starts.tolist(), stops.tolist(), strict=True)


class BatchedPipeline:
    """A non-transactional pipeline executed every `batch` commands (and on leaving the block)."""

    def __init__(self, client: redis.Redis, batch: int = BATCH_COMMANDS):
        self._pipe = client.pipeline(transaction=False)
        self._replace = Script.register(client, _REPLACE_ZSET)
        self._batch = batch
        self._queued = 0
        self.commands = 0

    def __call__(self, *args: Any) -> None:
        self._pipe.execute_command(*args)
        self._counted()

    def replace_zset(self, key: str, flat: list, ttl_s: int) -> None:
        """Atomically replace `key` by the set of `flat` ZADD arguments, expiring in `ttl_s`."""
        self.script(self._replace, key, [ttl_s, *flat])

    def script(self, script: Script, key: str, args: list) -> None:
        """Queue a registered script (`Script.register`) on one key."""
        script(keys=[key], args=args, client=self._pipe)
        self._counted()

    def _counted(self) -> None:
        self._queued += 1
        self.commands += 1
        if self._queued >= self._batch:
            self.flush()

    def flush(self) -> None:
        if self._queued:
            self._pipe.execute()
            self._queued = 0

    def __enter__(self) -> BatchedPipeline:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._pipe.reset()
