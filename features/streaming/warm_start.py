"""An online store the stream has not fed, started from the lake: the stream processor's state and
rows as if its worker had counted the lake's engagements of a day and the day before.

A workspace built from exports (and `make run`'s simulated history) reaches the lake without passing
through the stream, so the real-time views online would start empty while training saw them
filled (features/realtime replays the same lake): a v2 ranker would be served NaN where it learnt
counts. This replays the two days (backfill.Replay, the worker's own counting) and, for each post,
author and viewer-author pair that has no state on the server yet, writes the state hash the worker
keeps (its counters, `last`, a post's `author`, the worker's expiry) and then its row through the
worker's own path (RowWriter.read, RowWriter.write: Feast's hash, the packed record, the trending
sets). An entity the worker already holds is left to it: in production the stream fed the lake, so
the worker counted these engagements already. The viewers' action sequences are not rebuilt (not a
model input). The keys are the worker's (spec.StateKeys: tagged by the stream partition owning
them), for the stream's partition count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data.days import days_before
from data.stream.valkey_stream import DEFAULT_PARTITIONS
from data.vocabulary import Vocabulary
from features.online.layout import DEFAULT_NAMESPACE
from features.streaming import spec
from features.streaming.backfill import Replay, engagements_of
from features.streaming.state import COUNTER_TTL_S
from features.streaming.writer import RowWriter

CHUNK = 2_000  # state keys per pipelined round trip


def warm_start(store, lake_dir: Path, day: str, vocabulary: Vocabulary, client: Any = None,
               prefix: str = spec.PREFIX, namespace: str = DEFAULT_NAMESPACE,
               partitions: int = DEFAULT_PARTITIONS) -> dict[str, int]:
    """Write the real-time state and rows of the entities the lake's engagements of `day` and the day
    before name and the server does not hold. -> entities written, and left to the worker, per kind.
    `partitions`: the event stream's (LOUPE_STREAM_PARTITIONS), which the worker's keys are tagged by."""
    replay = Replay(vocabulary)
    for d in (days_before(day, 1), day):
        replay.rows(engagements_of(Path(lake_dir), d))  # the rows are not needed: the final states are
    writer = RowWriter(store, tuple(r.view for r in replay.views), client, prefix=prefix, namespace=namespace)
    keys_of = spec.StateKeys(partitions, prefix)
    states = {keys_of.key(r.view.entity, *ids)[1].encode(): (r.view.entity, state)
              for r in replay.views for ids, state in r.states.items()}
    keys = list(states)
    report = {f"{kind}_{what}": 0 for kind in ("post", "author", "va") for what in ("written", "held")}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        with writer.client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.exists(key)
            held = pipe.execute()
        new = [key for key, exists in zip(chunk, held) if not exists]
        for key, exists in zip(chunk, held):
            report[f"{states[key][0]}_{'held' if exists else 'written'}"] += 1
        with writer.client.pipeline(transaction=False) as pipe:
            for key in new:
                kind, state = states[key]
                fields = {b"last": state.last_ms, **state.counters}
                if kind == "post":
                    fields[b"author"] = state.author
                pipe.hset(key, mapping=fields)
                pipe.expire(key, COUNTER_TTL_S)
            pipe.execute()
        writer.write(writer.read(set(new)))
    return report
