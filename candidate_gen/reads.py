"""Every candidate source's reads of one step in one Redis round trip.

A source is written as a plan (candidate_gen.sources.base): a generator that yields the `Reads` it
needs next, gets their `Replies` back, and returns its candidates. `StepReader` sends what every
source of a request asks at the same step in one pipeline: their plain commands (the same command
asked by two sources, e.g. the viewer's followees, is sent once), then one script call for all
their `Window`s, the newest-first ranges of many sorted sets (a celebrity's recent posts, the
posts of ~100 similar authors, the engaged posts of ~50 close accounts, the viewer's hashtags'
trending sets). As redis-py commands that is one packed command and one parsed reply per key
(~10 µs of Python each); as one script call it is one command and one reply. The script reads
keys it is given, so it runs on standalone Redis/Valkey (docs/feed_cache_format.md).

A Home request's five sources thus cost two round trips in all, on the request's thread, where
each source used to take its own one or two on a thread of its own.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import redis
from redis.exceptions import NoScriptError

_WINDOWS = (Path(__file__).with_name("lua") / "windows.lua").read_text()


@dataclass(frozen=True)
class Window:
    """Up to `count` members of each sorted set, highest score first, with min <= score <= max."""

    keys: Sequence[str]
    max_score: Any  # a score, or "+inf"
    min_score: Any
    count: int


@dataclass
class Reads:
    """What a source asks of one step: redis-py commands (method, args, kwargs) and windows."""

    commands: list[tuple[str, tuple, dict]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    def command(self, method: str, *args: Any, **kwargs: Any) -> Reads:
        self.commands.append((method, args, kwargs))
        return self

    def window(self, keys: Sequence[str], max_score: Any, min_score: Any, count: int) -> Reads:
        self.windows.append(Window(list(keys), max_score, min_score, count))
        return self


@dataclass(frozen=True)
class WindowRows:
    """One window's rows, every key's in order: the posts and authors of its members, their scores,
    and how many rows each key gave (so a per-key value can be repeated over its rows)."""

    post: np.ndarray  # int64
    author: np.ndarray  # int64
    scores: np.ndarray  # float64
    counts: np.ndarray  # int64, one per key

    def __len__(self) -> int:
        return len(self.post)


@dataclass(frozen=True)
class Replies:
    commands: list[Any]  # in the order of Reads.commands (an error reply is raised, never returned)
    windows: list[WindowRows]  # in the order of Reads.windows


class StepReader:
    """Sends a step's Reads of many sources in one pipeline (commands, then one windows call)."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self._sha: str | None = None

    def read(self, reads: Reads) -> Replies:
        """One source's reads on their own (a source fetched outside a request's batch)."""
        return self.execute([reads])[0]

    def execute(self, batch: Sequence[Reads]) -> list[Replies]:
        """Replies per Reads, in order; raises redis.RedisError when the round trip fails."""
        index: dict[tuple, int] = {}  # a command asked twice is sent once
        calls, slots = [], []
        for reads in batch:
            slot = []
            for command in reads.commands:
                key = _key(command)
                if key not in index:
                    index[key] = len(calls)
                    calls.append(command)
                slot.append(index[key])
            slots.append(slot)
        windows = [w for reads in batch for w in reads.windows]
        keys = [k for w in windows for k in w.keys]
        try:
            flat = self._send(calls, windows, keys)
        except NoScriptError:  # a restarted server lost the script: load it, send again
            self._sha = None
            flat = self._send(calls, windows, keys)
        replies, scripted = flat[: len(calls)], flat[len(calls)] if keys else []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        rows = _split(scripted, windows)
        out, at = [], 0
        for reads, slot in zip(batch, slots, strict=True):
            out.append(Replies([replies[i] for i in slot], rows[at : at + len(reads.windows)]))
            at += len(reads.windows)
        return out

    def _send(self, calls: list[tuple], windows: list[Window], keys: list[str]) -> list[Any]:
        if keys and self._sha is None:
            self._sha = self.client.script_load(_WINDOWS)
        pipe = self.client.pipeline(transaction=False)
        for method, args, kwargs in calls:
            getattr(pipe, method)(*args, **kwargs)
        if keys:
            argv = list(chain.from_iterable((len(w.keys), w.max_score, w.min_score, w.count) for w in windows))
            pipe.evalsha(self._sha, len(keys), *keys, *argv)
        flat = pipe.execute(raise_on_error=False) if len(pipe) else []
        if keys and isinstance(flat[-1], NoScriptError):
            raise flat[-1]
        return flat


def run_plan(plan: Generator[Reads, Replies, Any], reader: StepReader) -> Any:
    """Drive one plan on its own, one round trip per step (tools, tests, a source outside a
    request's batch); what the plan returns."""
    try:
        reads = next(plan)
        while True:
            reads = plan.send(reader.read(reads))
    except StopIteration as done:
        return done.value


def _key(command: tuple[str, tuple, dict]) -> tuple:
    method, args, kwargs = command
    return method, tuple(tuple(a) if isinstance(a, list) else a for a in args), tuple(sorted(kwargs.items()))


def _split(groups: list[bytes], windows: list[Window]) -> list[WindowRows]:
    """The script's reply (per window: members, scores, counts, each one space-separated string) as
    WindowRows, each string parsed by one C call."""
    out = []
    for i, w in enumerate(windows):
        members, scores, counts = groups[3 * i : 3 * i + 3]
        ids = np.fromstring(members.replace(b":", b" "), dtype=np.int64, sep=" ") if members else np.zeros(0, np.int64)
        n = np.fromstring(counts, dtype=np.int64, sep=" ") if counts else np.zeros(0, np.int64)
        if len(ids) != 2 * int(n.sum()) or len(n) != len(w.keys):
            raise ValueError(f"a window over {len(w.keys)} sets came back malformed (members not "
                             "b'<post_id>:<author_id>', or counts that do not add up)")
        values = np.fromstring(scores, dtype=np.float64, sep=" ") if scores else np.zeros(0)
        out.append(WindowRows(ids[0::2], ids[1::2], values, n))
    return out
