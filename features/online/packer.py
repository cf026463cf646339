"""Write the packed-vector view from what Feast itself put in its online store.

Feast stays the source of truth: `materialize_packed` runs Feast's own `materialize`, then, for the
entities that window touched, reads Feast's online store back in batches (`online_read`, the same
call `get_online_features` makes) and writes one packed record per (view, entity) with pipelines.
Values, nulls, event timestamps, de-duplication of older rows, field mappings and transformations
are therefore exactly Feast's, by construction. `pack_all` rebuilds a whole view from Feast's Redis
keys (SCAN) - for bootstrapping or after a definition change, without re-materializing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import (
    deserialize_entity_key,
    serialize_entity_key,
    serialize_entity_key_prefix,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from data.days import DAY_S
from features.online.layout import DEFAULT_NAMESPACE, PackedViewLayout

logger = logging.getLogger(__name__)

_NULL_KINDS = (None, "null_val")
_GLOB_SPECIAL = re.compile(rb"([\\*?\[\]])")


@dataclass(frozen=True)
class PackStats:
    view: str
    fingerprint: str
    entities_read: int  # entity keys read back from Feast
    written: int  # packed records written (entities Feast holds data for)
    absent: int  # entities Feast holds nothing for (never written / expired): left alone


def redis_client_for(store: FeatureStore) -> Any:
    """A redis-py client for the store's Redis online store, parsed exactly as Feast parses it (a
    `RedisCluster` where the store is in Feast's cluster mode: features.store.online_store_config)."""
    from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig

    config = store.config.online_store
    if not isinstance(config, RedisOnlineStoreConfig):
        raise TypeError(f"packed view needs a Redis online store, got {type(config).__name__}")
    return RedisOnlineStore()._get_client(config)


class PackedViewWriter:
    """Packs feature views of one Feast project into the layout of `features.online.layout`."""

    def __init__(
        self,
        store: FeatureStore,
        client: Any = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        batch_size: int = 5_000,
    ):
        self.store = store
        self.client = client if client is not None else redis_client_for(store)
        self.namespace = namespace
        self.batch_size = batch_size
        self._provider = store._get_provider()

    def layout(self, view: str | FeatureView) -> PackedViewLayout:
        fv = self.store.get_feature_view(view) if isinstance(view, str) else view
        return PackedViewLayout.from_feature_view(fv, self.store.project, self.namespace)

    # --- entry points -------------------------------------------------------------------------
    def pack_window(self, view: str, start: datetime, end: datetime) -> PackStats:
        """Repack the entities whose source rows fall in [start, end] (what `materialize` touched)."""
        return self.pack_keys(view, self.window_keys(view, start, end))

    def window_keys(self, view: str, start: datetime, end: datetime) -> pa.Table:
        """The distinct join-key tuples with a source row in [start, end] (Arrow: compact)."""
        return self._window_keys(self.store.get_feature_view(view), start, end)

    def pack_keys(self, view: str, keys: pa.Table) -> PackStats:
        """`pack_entities` for a table of join-key columns (from `window_keys`)."""
        keys = keys.drop_null()  # a row with a null join key names no entity
        return self.pack_entities(view, {k: keys[k].to_pylist() for k in keys.column_names})

    def pack_all(self, view: str) -> PackStats:
        """Repack every entity Feast's Redis store holds under this view's join keys (SCAN)."""
        fv = self.store.get_feature_view(view)
        return self.pack_entities(fv, self._scan_entities(fv))

    def pack_entities(
        self, view: str | FeatureView, entities: Mapping[str, Sequence[Any]] | Iterable[EntityKeyProto]
    ) -> PackStats:
        """Read these entities back from Feast's online store and write their packed records."""
        fv = self.store.get_feature_view(view) if isinstance(view, str) else view
        layout = self.layout(fv)
        protos = (
            _entity_protos(layout, entities) if isinstance(entities, Mapping) else iter(entities)
        )
        siblings = self.siblings(fv, layout) if self._mirrors_key_ttl else []
        read = written = 0
        for batch in _batches(protos, self.batch_size):
            read += len(batch)
            written += self._pack_batch(fv, layout, batch, siblings)
        self.client.set(layout.meta_key, json.dumps(layout.meta()))
        stats = PackStats(fv.name, layout.fingerprint, read, written, read - written)
        logger.info("packed %s", stats)
        return stats

    def purge_old_generations(self, view: str) -> int:
        """Delete packed keys of this view written under any other layout fingerprint."""
        layout = self.layout(view)
        pattern = _glob_escape(layout.view_prefix) + b"*"
        current = layout.key_prefix
        deleted = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=pattern, count=1_000):
            if not key.startswith(current):
                batch.append(key)
            if len(batch) >= self.batch_size:
                deleted += self.client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += self.client.unlink(*batch)
        return deleted

    # --- internals ----------------------------------------------------------------------------
    @property
    def _mirrors_key_ttl(self) -> bool:
        return bool(getattr(self.store.config.online_store, "key_ttl_seconds", None))

    def siblings(self, fv: FeatureView, layout: PackedViewLayout) -> list[PackedViewLayout]:
        """Other packed views sharing Feast's hash (same join keys): one write re-arms its expiry."""
        return [
            self.layout(other)
            for other in self.store.list_feature_views()
            if other.name != fv.name and tuple(sorted(other.join_keys)) == layout.join_keys
        ]

    def _pack_batch(
        self,
        fv: FeatureView,
        layout: PackedViewLayout,
        protos: list[EntityKeyProto],
        siblings: Sequence[PackedViewLayout] = (),
    ) -> int:
        rows = self._provider.online_read(
            config=self.store.config,
            table=fv,
            entity_keys=protos,
            requested_features=list(layout.features),  # Feast appends to this list: fresh copy
        )
        n, k = len(rows), layout.n_features
        values = np.zeros((n, k), dtype=np.float32)
        nulls = np.ones((n, k), dtype=bool)
        ts_us = np.zeros(n, dtype=np.int64)
        keep = np.zeros(n, dtype=bool)
        for i, (event_ts, feature_data) in enumerate(rows):
            if not feature_data:
                continue
            any_value = False
            for j, name in enumerate(layout.features):
                proto = feature_data.get(name)
                kind = proto.WhichOneof("val") if proto is not None else None
                if kind in _NULL_KINDS:
                    continue
                values[i, j] = getattr(proto, kind)
                nulls[i, j] = False
                any_value = True
            ts = _epoch_us(event_ts)
            # Feast's Redis read returns epoch 0 + empty values for keys it has nothing for
            if any_value or ts > 0:
                keep[i] = True
                ts_us[i] = ts
        idx = np.flatnonzero(keep)
        if not len(idx):
            return 0
        records = layout.encode(ts_us[idx], values[idx], nulls[idx])
        kept = [protos[i] for i in idx]
        key_columns = _key_columns(layout, kept)
        keys = layout.entity_keys(key_columns)
        ttls = self._mirror_key_ttls(kept)
        sibling_keys = [s.entity_keys(key_columns) for s in siblings]
        with self.client.pipeline(transaction=False) as pipe:
            for i, (key, record, ttl_ms) in enumerate(zip(keys, records, ttls)):
                if ttl_ms is None:
                    pipe.set(key, record)
                    continue
                if ttl_ms > 0:
                    pipe.set(key, record, px=ttl_ms)
                else:  # Feast's hash expired between the read and now
                    pipe.delete(key)
                for other in sibling_keys:  # Feast re-armed the whole hash; no-op if absent
                    pipe.pexpire(other[i], max(ttl_ms, 1))
            pipe.execute()
        return len(idx)

    def _mirror_key_ttls(self, protos: list[EntityKeyProto]) -> list[int | None]:
        """Copy Feast's remaining key TTL (online_store.key_ttl_seconds) onto the packed keys."""
        if not self._mirrors_key_ttl:
            return [None] * len(protos)
        project = self.store.project.encode()
        version = self.store.config.entity_key_serialization_version
        with self.client.pipeline(transaction=False) as pipe:
            for p in protos:
                pipe.pttl(serialize_entity_key(p, entity_key_serialization_version=version) + project)
            remaining = pipe.execute()
        # -1: no expiry on Feast's key; -2: gone (0 => delete ours too)
        return [None if r == -1 else max(int(r), 0) for r in remaining]

    def _window_keys(self, fv: FeatureView, start: datetime, end: datetime) -> pa.Table:
        """Distinct join-key tuples in the view's batch source for [start, end] (keys only)."""
        from feast.utils import _get_column_names

        if fv.batch_source is None:
            raise ValueError(f"{fv.name} has no batch source: use pack_all or pack_entities")
        entities = [self.store.get_entity(name) for name in fv.entities]
        join_cols, _, ts_col, created_col = _get_column_names(fv, entities)
        job = self._provider.offline_store.pull_all_from_table_or_query(
            config=self.store.config,
            data_source=fv.batch_source,
            join_key_columns=join_cols,
            feature_name_columns=[],
            timestamp_field=ts_col,
            created_timestamp_column=created_col,
            start_date=_aware(start),
            end_date=_aware(end),
        )
        table: pa.Table = job.to_arrow()
        mapping = fv.batch_source.field_mapping or {}
        table = table.rename_columns([mapping.get(c, c) for c in table.column_names])
        keys = [e.join_key for e in entities]
        return table.select(keys).group_by(keys).aggregate([]) if table.num_rows else table.select(keys)

    def _scan_entities(self, fv: FeatureView) -> Iterator[EntityKeyProto]:
        """Entity keys of Feast's Redis hashes for this view's join keys (Feast's own key layout)."""
        project = self.store.project.encode()
        version = self.store.config.entity_key_serialization_version
        prefix = serialize_entity_key_prefix(list(fv.join_keys), version)
        pattern = _glob_escape(prefix) + b"*" + _glob_escape(project)
        for key in self.client.scan_iter(match=pattern, count=1_000):
            body = key[: -len(project)]
            try:
                proto = deserialize_entity_key(body, version)
            except Exception:  # noqa: BLE001 - not an entity key at all (any decode error): not one of ours
                continue
            if serialize_entity_key(proto, version) == body:  # not another project's suffix
                yield proto


def materialize_packed(
    store: FeatureStore,
    start_date: datetime,
    end_date: datetime,
    feature_views: Sequence[str] | None = None,
    *,
    client: Any = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> dict[str, PackStats]:
    """Feast's `materialize` for the window, then repack exactly the entities it touched.

    A view without a source row in the window (an empty snapshot: e.g. `viewer_tags` of an export
    without engagements) is left out of Feast's materialize, which raises IndexError on an empty
    pull, and packs nothing; its layout is still published, so readers find every view."""
    writer = PackedViewWriter(store, client, namespace=namespace)
    names = online_view_names(store, feature_views)
    touched = {name: writer.window_keys(name, start_date, end_date) for name in names}
    filled = [name for name in names if touched[name].num_rows]
    if filled:
        store.materialize(start_date, end_date, feature_views=filled)
    for name in names:
        if name not in filled:
            logger.info("%s has no rows in [%s, %s]: nothing to materialize", name, start_date, end_date)
    return {name: writer.pack_keys(name, touched.pop(name)) for name in names}


# --- helpers --------------------------------------------------------------------------------------
def online_view_names(store: FeatureStore, feature_views: Sequence[str] | None) -> list[str]:
    """The views a refresh writes: those named, or every online view a batch source feeds (a view
    on a push source is kept online by its pusher, the stream processor: features/streaming/)."""
    if feature_views:
        return list(feature_views)
    return [fv.name for fv in store.list_feature_views() if fv.online and fv.stream_source is None]


def _entity_protos(layout: PackedViewLayout, columns: Mapping[str, Sequence[Any]]) -> Iterator[EntityKeyProto]:
    kinds = {"Int64": "int64_val", "Int32": "int32_val", "String": "string_val"}
    fields = [kinds[d] for d in layout.join_key_dtypes]
    cols = [columns[k] for k in layout.join_keys]
    names = list(layout.join_keys)
    for parts in zip(*cols):
        yield EntityKeyProto(
            join_keys=names,
            entity_values=[ValueProto(**{f: v}) for f, v in zip(fields, _py(parts))],
        )


def _py(parts: tuple) -> list:
    return [p.item() if isinstance(p, np.generic) else p for p in parts]


def _key_columns(layout: PackedViewLayout, protos: list[EntityKeyProto]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in layout.join_keys]
    position = {k: i for i, k in enumerate(layout.join_keys)}
    for p in protos:
        for name, value in zip(p.join_keys, p.entity_values):
            cols[position[name]].append(getattr(value, value.WhichOneof("val")))
    return cols


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _epoch_us(ts: datetime | None) -> int:
    if ts is None:
        return 0
    ts = _aware(ts)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * DAY_S + delta.seconds) * 1_000_000 + delta.microseconds


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _glob_escape(raw: bytes) -> bytes:
    return _GLOB_SPECIAL.sub(rb"\\\1", raw)
