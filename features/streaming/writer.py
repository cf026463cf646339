"""Online rows of the real-time views, written from the processor's state in one pass: Feast's hash
fields (its online layout, so `get_online_features` reads them) and the packed record (what the
ranking service reads), both encoded by the batch writer's own encoders (features/online/encode.py)
and sent together, pipelined: to one server, or each command to the node owning its key's slot on a
Redis Cluster (`transport.sender_for`; a packed record is then a SET of its own, not part of an
MSET). Each entity has one writer (features/streaming/state.py), so a row
needs no version check: the last row written is computed from the newest state its writer read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import redis
from feast import FeatureStore

from data import columns as c
from data.redis_client import is_cluster
from features.online.encode import ViewEncoder
from features.online.layout import DEFAULT_NAMESPACE
from features.online.packer import PackedViewWriter
from features.online.transport import command, sender_for
from features.streaming import spec
from features.streaming.rows import PostChange
from features.streaming.state import STATE_TTL_S, CountedView, Snapshot, Summer
from features.tables import POST_TAGS, POSTED_AT_S
from features.tags import tag_vector

PARSED_CACHE = 200_000  # state keys whose parse a RowWriter keeps (forgotten in bulk when full)
# in Snapshot.sequence's order
SEQUENCE_TYPES = {"recent_post_ids": pa.int64(), "recent_author_ids": pa.int64(), "recent_types": pa.string(),
                  "recent_ts_ms": pa.int64()}


@dataclass
class Written:
    rows: int = 0  # entity rows written (Feast's hash + packed record)
    pruned: int = 0  # counter fields no window reaches any more, deleted
    trending: int = 0  # trending set commands (ZADD, its trim and its expiry)


class RowWriter:
    def __init__(self, store: FeatureStore, counted: tuple[CountedView, ...], client: Any = None,
                 prefix: str = "loupe:rt", namespace: str = DEFAULT_NAMESPACE):
        packer = PackedViewWriter(store, client, namespace=namespace)
        self.client = packer.client
        self.sender = sender_for(self.client)
        self.prefix = prefix
        self._parsed: dict[bytes, tuple[str, tuple[int, ...]]] = {}  # state key -> (kind, ids): see _parse
        self.counted = {view.entity: view for view in counted}
        self.summers = {view.entity: Summer(view) for view in counted}
        self.encoders = {view.entity: ViewEncoder.of(packer, store.get_feature_view(view.view)) for view in counted}
        self.encoders["seq"] = ViewEncoder.of(packer, store.get_feature_view(spec.SEQUENCE_VIEW))
        # a post's content row, known from its publication: without it a post published since the
        # last daily build is ranked with no age and no hashtags (its row would come with the next)
        self.encoders[POST_TAGS.name] = ViewEncoder.of(packer, store.get_feature_view(POST_TAGS.name))
        for encoder in self.encoders.values():  # each generation's description, for reader.check()
            if encoder.layout.n_features:
                self.client.set(encoder.layout.meta_key, json.dumps(encoder.layout.meta()))

    def claim(self, partitions: list[int]) -> tuple[set[bytes], list[bytes]]:
        """The post and author state keys whose rows are due on these partitions, and the claimed
        sets they came from, to release once the rows are written. A set a previous owner claimed and
        never released (it died before writing) is claimed again as it is."""
        dirty = [self.dirty_key(p).encode() for p in partitions]
        claimed = [self.claimed_key(p).encode() for p in partitions]
        with self.sender.ahead() as ahead:  # redis-py's cluster pipeline refuses RENAMENX (two keys, one slot here)
            for source, target in zip(dirty, claimed):  # an error reply when the dirty set does not exist: harmless
                ahead.send(source, command(b"RENAMENX", source, target))
            for key in claimed:
                ahead.send(key, command(b"SMEMBERS", key))
            replies = ahead.replies()[len(partitions):]
        if any(isinstance(reply, Exception) for reply in replies):  # e.g. MOVED while slots move
            replies = [self._claim_through_client(source, target) for source, target in zip(dirty, claimed)]
        claimed = [key for key, members in zip(claimed, replies) if members]
        return set().union(*replies), claimed

    def _claim_through_client(self, source: bytes, target: bytes) -> set[bytes]:
        """One partition's claim through redis-py's client, which follows redirections."""
        try:
            self.client.renamenx(source, target)
        except redis.ResponseError:  # no dirty set
            pass
        return self.client.smembers(target)

    def read(self, keys: set[bytes]) -> dict[bytes, Snapshot]:
        """The states of these keys (spec.StateKeys), in one pipelined send: a counter hash (HGETALL; a
        post's hashtags beside it) or a viewer's sequence list (LRANGE)."""
        keys = sorted(keys)
        if not keys:
            return {}
        kinds = [self._parse(k) for k in keys]
        reads = [command(b"LRANGE", k, b"0", b"-1") if kind == "seq" else command(b"HGETALL", k)
                 for k, (kind, _) in zip(keys, kinds)]
        posts = [(k, spec.post_tags_key(ids[0], self.prefix).encode()) for k, (kind, ids) in zip(keys, kinds)
                 if kind == "post"]
        reads += [command(b"GET", tags) for _, tags in posts]
        replies = self.sender.send([*keys, *(tags for _, tags in posts)], reads)
        states = {k: Snapshot.of_sequence(r) if kind == "seq" else Snapshot.parse(r)
                  for k, (kind, _), r in zip(keys, kinds, replies)}
        for (k, _), tags in zip(posts, replies[len(keys):]):
            states[k].tags = spec.parse_tags(tags)
        return states

    def write(self, states: Mapping[bytes, Snapshot], release: list[bytes] = ()) -> Written:
        """The rows of these entities, then the claimed sets in `release` deleted (after the rows:
        a crash before leaves them claimed, for the next owner)."""
        done = Written()
        by_kind: dict[str, list[tuple[bytes, tuple[int, ...], Snapshot]]] = {}
        for key, snap in states.items():
            if snap.last_ms == 0:  # no state (expired): nothing to write
                continue
            kind, ids = self._parse(key)
            by_kind.setdefault(kind, []).append((key, ids, snap))
        keyed: list[bytes] = []  # each command's key
        commands: list[bytes] = []
        for kind, entities in by_kind.items():
            if kind == "seq":  # a viewer's sequence list, its state
                batch, prunes = self._sequence_rows(entities), []
            else:
                batch, prunes = self._counted_rows(kind, entities)
                done.pruned += sum(map(len, prunes))
                if kind == "post":
                    trending_keys, trending = self._trending(entities, batch[0])
                    done.trending += len(trending)
                    keyed += trending_keys
                    commands += trending
            row_keys, row_commands = self._commands(kind, batch)
            keyed += row_keys
            commands += row_commands
            for (key, _, _), fields in zip(entities, prunes):
                if fields:
                    keyed.append(key)
                    commands.append(command(b"HDEL", key, *fields))
            done.rows += len(entities)
        keyed += release
        commands += [command(b"DEL", key) for key in release]
        if commands:
            self.sender.send(keyed, commands)
        return done

    def _counted_rows(self, kind: str, entities) -> tuple[tuple[pa.RecordBatch, np.ndarray], list[list[bytes]]]:
        view, summer = self.counted[kind], self.summers[kind]
        values = np.zeros((len(entities), summer.width), dtype=np.float32)
        prunes = []
        for i, (_, _, snap) in enumerate(entities):
            row, prune = summer.features(snap)
            values[i] = row
            prunes.append(prune)
        columns = {k: pa.array([ids[j] for _, ids, _ in entities], pa.int64()) for j, k in enumerate(view.join_keys)}
        columns.update({name: pa.array(values[:, j]) for j, name in enumerate(view.names)})
        ts_us = np.array([snap.last_ms * 1000 for _, _, snap in entities], dtype=np.int64)
        return (pa.RecordBatch.from_pydict(columns), ts_us), prunes

    def _sequence_rows(self, entities) -> tuple[pa.RecordBatch, np.ndarray]:
        arrays = {c.VIEWER_ID: pa.array([viewer for _, (viewer,), _ in entities], pa.int64())}
        arrays.update({name: pa.array([snap.sequence[j] for _, _, snap in entities], pa.list_(t))
                       for j, (name, t) in enumerate(SEQUENCE_TYPES.items())})
        ts_us = np.array([snap.last_ms * 1000 for _, _, snap in entities], dtype=np.int64)
        return pa.RecordBatch.from_pydict(arrays), ts_us

    def post_changes(self, changes: list[PostChange]) -> None:
        """Posts published (their hashtags kept, for the per-hashtag trending sets, and their
        `post_tags` row written as the daily build will: bucket vector and publication time) and
        deleted (taken out of every trending set they are in). All idempotent."""
        deleted = [change for change in changes if change.deleted]
        published = [change for change in changes if not change.deleted]
        if published:
            self.sender.send(*self._commands(POST_TAGS.name, _post_tags_rows(published)))
        # a cluster answers MGET for keys of one slot only: mget_nonatomic sends one per slot
        mget = self.client.mget_nonatomic if is_cluster(self.client) else self.client.mget
        stored = mget([spec.post_tags_key(ch.post_id, self.prefix) for ch in deleted]) if deleted else []
        with self.client.pipeline(transaction=False) as pipe:
            for change in changes:
                if not change.deleted and change.tags:
                    pipe.set(spec.post_tags_key(change.post_id, self.prefix), change.tags, ex=STATE_TTL_S)
            for change, known in zip(deleted, stored):
                tags = set(spec.parse_tags(change.tags.encode())) | set(spec.parse_tags(known))
                for key in (spec.trend_key(self.prefix), *(spec.trend_tag_key(t, self.prefix) for t in tags)):
                    pipe.zrem(key, _member(change.post_id, change.author_id))
            pipe.execute()

    def _trending(self, entities, rows: pa.RecordBatch) -> tuple[list[bytes], list[bytes]]:
        """The posts' places in the trending sets, global and per hashtag (spec.trend_score), each
        set trimmed to its top: (each command's key, the commands). A post below the bar keeps its
        place, decaying (spec)."""
        counts = {w.name: rows.column(f"post_rt_engagements_{w.name}").to_numpy() for w, _ in spec.TREND_WINDOWS}
        by_set: dict[str, list[bytes]] = {}
        for i, (_, (post_id,), snap) in enumerate(entities):
            score = spec.trend_score({name: float(values[i]) for name, values in counts.items()})
            if score is None or not snap.author:
                continue
            place = b"%r" % (math.log2(score) + snap.last_ms / spec.TREND_HALF_LIFE_MS)
            member = _member(post_id, snap.author)
            for key in (spec.trend_key(self.prefix), *(spec.trend_tag_key(t, self.prefix) for t in snap.tags)):
                by_set.setdefault(key, []).extend((place, member))
        keys, commands = [], []
        for key, pairs in by_set.items():
            top = spec.TREND_TOP_K if key == spec.trend_key(self.prefix) else spec.TREND_TAG_TOP_K
            keys += [key.encode()] * 3
            commands += [command(b"ZADD", key.encode(), *pairs),
                         command(b"ZREMRANGEBYRANK", key.encode(), b"0", b"%d" % -(top + 1)),
                         command(b"EXPIRE", key.encode(), b"%d" % spec.TREND_TTL_S)]
        return keys, commands

    def _commands(self, kind: str, batch: tuple[pa.RecordBatch, np.ndarray]) -> tuple[list[bytes], list[bytes]]:
        """(each command's key, the commands): Feast's hash of each row (HSET), and the packed records
        in one MSET on one server (one reply, not one a row), one SET each on a cluster."""
        rows, ts_us = batch
        return self.encoders[kind].write_commands(rows, ts_us, per_key=self.sender.per_key)

    # --- keys ----------------------------------------------------------------------------------
    def _parse(self, key: bytes) -> tuple[str, tuple[int, ...]]:
        """spec.parse_state_key, remembered: a hot entity's key is read and written at every poll."""
        parsed = self._parsed.get(key)
        if parsed is None:
            if len(self._parsed) >= PARSED_CACHE:
                self._parsed.clear()
            parsed = self._parsed[key] = spec.parse_state_key(key, self.prefix)
        return parsed

    def dirty_key(self, partition: int) -> str:
        return f"{self.prefix}:dirty:{{{partition}}}"

    def claimed_key(self, partition: int) -> str:
        return f"{self.prefix}:claimed:{{{partition}}}"


def _post_tags_rows(published: list[PostChange]) -> tuple[pa.RecordBatch, np.ndarray]:
    """The posts' `post_tags` rows, as features/jobs/post_tags.py computes them (float32 bucket
    shares; the publication time in whole seconds), stamped with the publication time."""
    vectors = np.array([tag_vector(ch.hashtags) for ch in published], dtype=np.float64).astype(np.float32)
    columns = {c.POST_ID: pa.array([ch.post_id for ch in published], pa.int64())}
    buckets = [f for f in POST_TAGS.features if f != POSTED_AT_S]
    columns.update({name: pa.array(vectors[:, k]) for k, name in enumerate(buckets)})
    columns[POSTED_AT_S] = pa.array(np.array([ch.created_ms // 1000 for ch in published], dtype=np.float32))
    return pa.RecordBatch.from_pydict(columns), np.array([ch.created_ms * 1000 for ch in published], dtype=np.int64)


def _member(post_id: int, author_id: int) -> bytes:
    """A post as every candidate sorted set holds it (candidate_gen.records.member, a room above)."""
    return b"%d:%d" % (post_id, author_id)
