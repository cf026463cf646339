"""Every candidate source's reads of one step in one Redis round trip.

A source is written as a plan (candidate_gen.sources.base): a generator that yields the `Reads` it
needs next, gets their `Replies` back, and returns its candidates. `StepReader` sends what every
source of a request asks at the same step in one pipeline: their plain commands (the same command
asked by two sources, e.g. the viewer's followees, is sent once), then one script call for all
their `Window`s, the newest-first ranges of many sorted sets (a celebrity's recent posts, the
posts of ~100 similar authors, the engaged posts of ~50 close accounts, the viewer's hashtags'
trending sets). As redis-py commands that is one packed command and one parsed reply per key
(~10 µs of Python each); as one script call it is one command and one reply. The script reads
keys it is given; on a Redis Cluster it is one call per hash slot of the keys, still one round
trip (docs/feed_cache_format.md).

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

from data.redis_client import is_cluster, slot_groups

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
        parts = _parts(self.client, windows)
        try:
            flat = self._send(calls, parts)
        except NoScriptError:  # a restarted server lost the script: load it, send again
            self._sha = None
            flat = self._send(calls, parts)
        replies = flat[: len(calls)]
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        rows = _stitch(windows, parts, flat[len(calls):])
        out, at = [], 0
        for reads, slot in zip(batch, slots, strict=True):
            out.append(Replies([replies[i] for i in slot], rows[at : at + len(reads.windows)]))
            at += len(reads.windows)
        return out

    def _send(self, calls: list[tuple], parts: list[list[_Part]]) -> list[Any]:
        if parts and self._sha is None:
            self._sha = self.client.script_load(_WINDOWS)
        pipe = self.client.pipeline(transaction=False)
        for method, args, kwargs in calls:
            getattr(pipe, method)(*args, **kwargs)
        for part in parts:
            keys = [k for p in part for k in p.window.keys]
            argv = chain.from_iterable((len(p.window.keys), p.window.max_score, p.window.min_score, p.window.count)
                                       for p in part)
            # a command, not the method: a cluster pipeline refuses `evalsha`
            pipe.execute_command("EVALSHA", self._sha, len(keys), *keys, *argv)
        flat = pipe.execute(raise_on_error=False) if len(pipe) else []
        for reply in flat[len(calls):]:
            if isinstance(reply, Exception):
                raise reply
        return flat


@dataclass(frozen=True)
class _Part:
    """The keys of one window that go into one script call, and which window they came from."""

    window: Window
    origin: int  # position of the window in the step
    positions: list[int] | None  # of the keys within it; None: all of them, in order


def _parts(client: Any, windows: list[Window]) -> list[list[_Part]]:
    """The script calls that read `windows`, as lists of parts. One server: one call for all (the
    script takes any keys). A cluster: one call per hash slot, each holding the slot's keys of
    every window (a script may only touch keys of one slot)."""
    if not any(w.keys for w in windows):
        return []
    if not is_cluster(client):
        return [[_Part(w, i, None) for i, w in enumerate(windows)]]
    flat = [(i, j, k) for i, w in enumerate(windows) for j, k in enumerate(w.keys)]
    calls = []
    for group in slot_groups(client, [k for _, _, k in flat]):
        by_window: dict[int, list[int]] = {}
        for at in group:
            by_window.setdefault(flat[at][0], []).append(flat[at][1])
        calls.append([_Part(Window([windows[i].keys[j] for j in js], windows[i].max_score, windows[i].min_score,
                                   windows[i].count), i, js) for i, js in by_window.items()])
    return calls


def _stitch(windows: list[Window], parts: list[list[_Part]], replies: list[Any]) -> list[WindowRows]:
    """Every window's rows, its keys' in order, from the replies of its calls."""
    empty = WindowRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    if not parts:
        return [WindowRows(empty.post, empty.author, empty.scores, np.zeros(len(w.keys), np.int64)) for w in windows]
    if len(parts) == 1 and all(p.positions is None for p in parts[0]):  # one server: as they came
        return _split(replies[0], [p.window for p in parts[0]])
    per_key: list[list[WindowRows]] = [[empty] * len(w.keys) for w in windows]
    for part, reply in zip(parts, replies, strict=True):
        for p, rows in zip(part, _split(reply, [p.window for p in part]), strict=True):
            ends = np.cumsum(rows.counts)
            for j, end, n in zip(p.positions, ends.tolist(), rows.counts.tolist(), strict=True):
                s = slice(end - n, end)
                per_key[p.origin][j] = WindowRows(rows.post[s], rows.author[s], rows.scores[s], np.array([n], np.int64))
    return [WindowRows(*(np.concatenate([getattr(r, f) for r in keyed]) if keyed else getattr(empty, f)
                         for f in ("post", "author", "scores", "counts")))
            for keyed in per_key]


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
