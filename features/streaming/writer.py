"""Online rows of the real-time views, written from the processor's state in one pass: Feast's hash
fields (its online layout, so `get_online_features` reads them) and the packed record (what the
ranking service reads), both encoded by the batch writer's own encoders (features/online/bulk_write.py)
and written together by one script per entity, only over an older version (state.WRITE_IF_NEWER).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import redis
from feast import FeatureStore

from data import columns as c
from features.online.bulk_write import ViewWrite
from features.online.layout import DEFAULT_NAMESPACE
from features.online.packer import PackedViewWriter
from features.online.transport import bulk, command, send_pipelined
from features.streaming import spec
from features.streaming.state import STATE_TTL_S, WRITE_IF_NEWER, CountedView, Snapshot, Summer

SEQUENCE_TYPES = {"recent_post_ids": pa.int64(), "recent_author_ids": pa.int64(), "recent_types": pa.string(),
                  "recent_ts_ms": pa.int64()}


@dataclass
class Written:
    rows: int = 0  # entity rows written (Feast's hash + packed record)
    current: int = 0  # rows skipped: already written at that version or a newer one
    pruned: int = 0  # counter fields no window reaches any more, deleted


class RowWriter:
    def __init__(self, store: FeatureStore, counted: tuple[CountedView, ...], client: Any = None,
                 prefix: str = "loupe:rt", namespace: str = DEFAULT_NAMESPACE):
        packer = PackedViewWriter(store, client, namespace=namespace)
        self.client = packer.client
        self.prefix = prefix
        self.counted = {view.entity: view for view in counted}
        self.summers = {view.entity: Summer(view) for view in counted}
        self.encoders = {view.entity: ViewWrite(packer, store.get_feature_view(view.view)) for view in counted}
        self.encoders["viewer"] = ViewWrite(packer, store.get_feature_view(spec.SEQUENCE_VIEW))
        for encoder in self.encoders.values():  # each generation's description, for reader.check()
            if encoder.layout.n_features:
                self.client.set(encoder.layout.meta_key, json.dumps(encoder.layout.meta()))
        self._sha = self.client.script_load(WRITE_IF_NEWER)

    def read(self, keys: list[str]) -> tuple[dict[bytes, Snapshot], dict[bytes, list[bytes]]]:
        """The state of these keys (one pipelined HGETALL each; per key one consistent reading with
        its version), and the sequences of the viewers among them."""
        states = [k.encode() for k in keys]
        viewer = f"{self.prefix}:viewer:".encode()
        lists = [self.sequence_key(int(k[len(viewer):])) for k in states if k.startswith(viewer)]
        commands = [command(b"HGETALL", k) for k in states]
        commands += [command(b"LRANGE", k, b"0", b"%d" % (spec.SEQUENCE_LENGTH - 1)) for k in lists]
        replies = send_pipelined(self.client, [b"".join(commands)], len(commands)) if commands else []
        return ({k: Snapshot.parse(r) for k, r in zip(states, replies)},
                dict(zip(lists, replies[len(states):])))

    def write(self, states: Mapping[bytes, Snapshot], sequences: Mapping[bytes, list[bytes]]) -> Written:
        """The rows of every entity whose state is newer than its written row."""
        done = Written()
        by_kind: dict[str, list[tuple[bytes, tuple[int, ...], Snapshot]]] = {}
        skip = len(self.prefix) + 1
        for key, snap in states.items():
            if snap.version == 0:  # no state (expired): nothing to write
                continue
            if snap.version <= snap.written:
                done.current += 1
                continue
            kind, *ids = key[skip:].decode().split(":")
            by_kind.setdefault(kind, []).append((key, tuple(map(int, ids)), snap))
        prunes: list[bytes] = []
        scripts: list[bytes] = []
        for kind, entities in by_kind.items():
            if kind == "viewer":
                batch = self._sequence_rows(entities, sequences)
            else:
                batch, extra = self._counted_rows(kind, entities)
                done.pruned += sum(len(fields) for _, fields in extra)
                prunes += [command(b"HDEL", key, *fields) for key, fields in extra if fields]
            scripts += self._scripts(kind, batch, [key for key, _, _ in entities],
                                     [snap.version for _, _, snap in entities])
        if scripts:
            replies = self._send(scripts + prunes)
            done.rows = sum(1 for r in replies[:len(scripts)] if r == 1)
        return done

    def _counted_rows(self, kind: str, entities) -> tuple[tuple[pa.RecordBatch, np.ndarray], list]:
        view, summer = self.counted[kind], self.summers[kind]
        values = np.zeros((len(entities), summer.width), dtype=np.float32)
        prunes = []
        for i, (key, _, snap) in enumerate(entities):
            row, prune = summer.features(snap)
            values[i] = row
            prunes.append((key, prune))
        columns = {k: pa.array([ids[j] for _, ids, _ in entities], pa.int64()) for j, k in enumerate(view.join_keys)}
        columns.update({name: pa.array(values[:, j]) for j, name in enumerate(view.names)})
        ts_us = np.array([snap.last_ms * 1000 for _, _, snap in entities], dtype=np.int64)
        return (pa.RecordBatch.from_pydict(columns), ts_us), prunes

    def _sequence_rows(self, entities, sequences) -> tuple[pa.RecordBatch, np.ndarray]:
        columns: dict[str, list] = {c.VIEWER_ID: [], **{name: [] for name in SEQUENCE_TYPES}}
        for _, (viewer,), _ in entities:
            items = [item.decode().split(",") for item in sequences.get(self.sequence_key(viewer), [])]
            columns[c.VIEWER_ID].append(viewer)
            columns["recent_post_ids"].append([int(i[0]) for i in items])
            columns["recent_author_ids"].append([int(i[1]) for i in items])
            columns["recent_types"].append([i[2] for i in items])
            columns["recent_ts_ms"].append([int(i[3]) for i in items])
        arrays = {c.VIEWER_ID: pa.array(columns[c.VIEWER_ID], pa.int64())}
        arrays.update({name: pa.array(columns[name], pa.list_(t)) for name, t in SEQUENCE_TYPES.items()})
        ts_us = np.array([snap.last_ms * 1000 for _, _, snap in entities], dtype=np.int64)
        return pa.RecordBatch.from_pydict(arrays), ts_us

    def _scripts(self, kind: str, batch: tuple[pa.RecordBatch, np.ndarray], state_keys: list[bytes],
                 versions: list[int]) -> list[bytes]:
        encoder = self.encoders[kind]
        rows, ts_us = batch
        encoded = encoder.encode_rows(rows, ts_us)
        n_args = 3 + 3 + 3 + 2 * (1 + len(encoder.fv.features))
        head = b"*%d\r\n" % n_args + bulk(b"EVALSHA") + bulk(self._sha.encode() if isinstance(self._sha, str)
                                                              else self._sha) + bulk(b"3")
        ttl = bulk(b"%d" % STATE_TTL_S)
        packed_keys = encoded.packed_keys or [b""] * len(state_keys)
        records = encoded.records or [b""] * len(state_keys)
        return [head + bulk(state) + bulk(feast) + bulk(packed) + bulk(b"%d" % version) + ttl + bulk(record) + args
                for state, feast, packed, version, record, args in zip(
                    state_keys, encoded.feast_keys, packed_keys, versions, records, encoded.hset_args)]

    def _send(self, commands: list[bytes]) -> list[Any]:
        joined = [b"".join(commands)]  # one sendall, not one per command
        try:
            return send_pipelined(self.client, joined, len(commands))
        except redis.ResponseError as exc:  # the server restarted and lost its scripts: load, send again
            if "NOSCRIPT" not in str(exc):
                raise
            self._sha = self.client.script_load(WRITE_IF_NEWER)
            return send_pipelined(self.client, joined, len(commands))

    # --- keys ----------------------------------------------------------------------------------
    def state_key(self, kind: str, *ids: int) -> str:
        return ":".join([self.prefix, kind, *map(str, ids)])

    def sequence_key(self, viewer: int) -> bytes:
        return f"{self.prefix}:seq:{viewer}".encode()
