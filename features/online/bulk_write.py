"""Write a window of feature rows into Feast's Redis online store and the packed view, in one pass.

Feast's `materialize` turns every value into a protobuf object in Python, and `materialize_packed`
then reads every entity back to pack it: ~2-3k entities a second here (a small world's day, 0.8M
entities, took 425 s). `write_window` writes the same bytes straight from Arrow columns:

- the rows are Feast's: its offline store's own latest-row-per-entity query for the window (the
  query its materialize runs), field mapping applied as Feast applies it;
- Feast's hash per entity: its entity-key encoding (`serialize_entity_key`, vectorised here for
  integer keys, Feast's own function otherwise), its field names (`_mmh3` of "view:feature"), its
  value encoding (a Float32/Float64 value is a fixed-size protobuf, built with numpy; other types
  go through Feast's own converter), its timestamp field and key TTL;
- Feast's staleness rule: a stored row as new or newer than the incoming one is kept;
- the packed record of each entity written beside its hash, from the same values;
- the registry's materialization interval, as `materialize` records it.

tests/features/test_online_bulk_write.py compares every Redis key and value with Feast's materialize
+ the packer's read-back, byte for byte. A view outside the plain case (a transformation, a filter,
offline writes, a precomputed feature service, no batch source) goes through `materialize_packed`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.utils import _get_column_names

from features.online.encode import ViewEncoder, epoch_us, timestamp_ns
from features.online.layout import DEFAULT_NAMESPACE
from features.online.packer import PackedViewWriter, PackStats, _aware, materialize_packed, online_view_names
from features.online.transport import ClusterSender, ServerSender, bulk, command, sender_for

Sender = ServerSender | ClusterSender


def fast_path_refusal(store: FeatureStore, fv: FeatureView) -> str | None:
    """Why `fv` must go through Feast's own materialize, or None when this writer can write it."""
    if type(fv) is not FeatureView:
        return f"{type(fv).__name__}: Feast's materialize runs its transformations"
    if fv.batch_source is None:
        return "no batch source"
    if getattr(fv, "offline", False):
        return "offline writes (offline=True)"
    if getattr(fv, "batch_engine_config", None) or getattr(fv, "filter", None):
        return "a filter or an engine setting of its own"
    for service in store.list_feature_services():
        if getattr(service, "precompute_online", False) and fv.name in {
                p.name for p in service.feature_view_projections}:
            return f"feature service {service.name} precomputes online vectors"
    return None


def write_window(
    store: FeatureStore,
    start_date: datetime,
    end_date: datetime,
    feature_views: Sequence[str] | None = None,
    *,
    client: Any = None,
    namespace: str = DEFAULT_NAMESPACE,
    batch_rows: int = 20_000,
) -> dict[str, PackStats]:
    """What `materialize_packed` does for the window, written from Arrow: Feast's online store and
    the packed view, then the registry's materialization interval. Returns stats per view."""
    writer = PackedViewWriter(store, client, namespace=namespace, batch_size=batch_rows)
    views, slow = split_views(writer, feature_views)
    stats = materialize_packed(store, start_date, end_date, slow, client=writer.client,
                               namespace=namespace) if slow else {}
    start, end = _aware(start_date), _aware(end_date)
    for name, fv in views.items():
        if name not in slow:
            stats[name] = ViewWrite(writer, fv).run(start, end, batch_rows)
            store.registry.apply_materialization(fv, store.project, start, end)
    return {name: stats[name] for name in views}


def split_views(writer: PackedViewWriter, feature_views: Sequence[str] | None,
                refusal=lambda fv: None) -> tuple[dict[str, FeatureView], list[str]]:
    """The online views to write, and those that must go through Feast's own materialize: a view
    outside the plain case (`fast_path_refusal`, or the caller's own `refusal`)."""
    store = writer.store
    views = {name: store.get_feature_view(name) for name in online_view_names(store, feature_views)}
    return views, [name for name, fv in views.items() if fast_path_refusal(store, fv) or refusal(fv)]


@dataclass(frozen=True)
class BatchWrite:
    written: int  # rows whose hash and packed record were written
    kept: int  # rows Feast's staleness rule left to the stored hash
    behind: np.ndarray  # indices of kept rows whose packed record lags the stored hash: repack them


def write_batch(encoder: ViewEncoder, sender: Sender, batch: pa.RecordBatch, check_stored: bool = True,
                changed: np.ndarray | None = None) -> BatchWrite:
    """Write one batch of a window's latest rows: Feast's hash and the packed record of each, one
    pipelined send (`sender`: `transport.sender_for` the client). `check_stored`: apply Feast's
    staleness rule against the stored hash (one HGET pipeline first); a caller that knows every row
    is newer than anything stored skips it. `changed` (rows x features; only without the check): the
    features whose values differ from what each row's stored hash holds, the only ones sent to it
    (`ViewEncoder.encode_rows`); a row whose hash turns out not to be there is written whole."""
    keys = encoder.feast_keys(batch)
    ts_us = epoch_us(batch.column(encoder.fv.batch_source.timestamp_field))
    if not check_stored:
        replies = sender.send(*encoder.write_commands(batch, ts_us, keys, sender.per_key, changed))
        if changed is not None:  # HSET answers how many fields it added: a complete hash, none
            lost = np.flatnonzero(~changed.all(axis=1) & (np.array(replies[:batch.num_rows]) > 0))
            if len(lost):  # the stored hash was gone (evicted, deleted by hand): write it whole
                sender.send(*encoder.write_commands(batch.take(pa.array(lost)), ts_us[lost],
                                                    [keys[i] for i in lost.tolist()], sender.per_key))
        return BatchWrite(batch.num_rows, 0, np.zeros(0, dtype=np.int64))
    if changed is not None:
        raise ValueError("`changed` needs check_stored=False: a row Feast's rule keeps sends nothing")
    stored_ns = _stored_ns(encoder, sender, keys)
    stale = _stale(keys, ts_us, stored_ns)
    fresh, kept = np.flatnonzero(~stale), np.flatnonzero(stale)
    if len(fresh):
        rows = batch.take(pa.array(fresh)) if len(fresh) < batch.num_rows else batch
        sender.send(*encoder.write_commands(rows, ts_us[fresh], [keys[i] for i in fresh.tolist()], sender.per_key))
    behind = kept[_behind(encoder, sender, batch.take(pa.array(kept)), stored_ns[kept])] if len(kept) else kept
    return BatchWrite(len(fresh), len(kept), behind)


class ViewWrite:
    """One view's window in this process: pull, then write per batch (`write_batch`)."""

    def __init__(self, writer: PackedViewWriter, fv: FeatureView):
        self.writer, self.fv, self.store = writer, fv, writer.store
        self.client = writer.client
        self.sender = sender_for(writer.client)
        self.encoder = ViewEncoder.of(writer, fv)
        self.layout = self.encoder.layout

    def run(self, start: datetime, end: datetime, batch_rows: int) -> PackStats:
        table = self._pull(start, end)
        read = written = 0
        for batch in table.to_batches(max_chunksize=batch_rows):
            read += batch.num_rows
            done = write_batch(self.encoder, self.sender, batch)
            written += done.written + done.kept
            if len(done.behind):  # the packer's path: read back what Feast holds
                stats = self.writer.pack_entities(self.fv, self.encoder.protos(batch.take(pa.array(done.behind))))
                written += stats.written - len(done.behind)
        self.client.set(self.layout.meta_key, json.dumps(self.layout.meta()))
        return PackStats(self.fv.name, self.layout.fingerprint, read, written, read - written)

    def _pull(self, start: datetime, end: datetime) -> pa.Table:
        """The latest row per entity in [start, end], from Feast's offline store, columns renamed
        by the source's field mapping (as Feast's source-read step does)."""
        entities = [self.store.get_entity(name) for name in self.fv.entities]
        join_cols, feature_cols, ts_col, created_col = _get_column_names(self.fv, entities)
        job = self.store._get_provider().offline_store.pull_latest_from_table_or_query(
            config=self.store.config, data_source=self.fv.batch_source, join_key_columns=join_cols,
            feature_name_columns=feature_cols, timestamp_field=ts_col,
            created_timestamp_column=created_col, start_date=start, end_date=end)
        table: pa.Table = job.to_arrow()
        mapping = self.fv.batch_source.field_mapping or {}
        table = table.rename_columns([mapping.get(c, c) for c in table.column_names])
        keys = [table[k].null_count for k in self.encoder.key_types]
        if any(keys):  # Feast would fail converting such a row: say which view instead
            raise ValueError(f"{self.fv.name}: {sum(keys)} rows in [{start}, {end}] have a null join key")
        return table


def _stored_ns(encoder: ViewEncoder, sender: Sender, keys: list[bytes]) -> np.ndarray:
    """The event time Feast's hash holds for each key, in ns (0: none)."""
    ts_field = bulk(encoder.ts_field)
    stored = sender.send(keys, [b"*3\r\n$4\r\nHGET\r\n" + bulk(k) + ts_field for k in keys])
    return np.fromiter((timestamp_ns(raw) for raw in stored), dtype=np.int64, count=len(keys))


def _stale(keys: list[bytes], ts_us: np.ndarray, stored_ns: np.ndarray) -> np.ndarray:
    """Rows Feast would not write: the stored row (or an earlier row of this batch) is as new."""
    stale = np.zeros(len(keys), dtype=bool)
    latest: dict[bytes, int] = {}
    new_ns = ts_us * 1000
    for i, key in enumerate(keys):
        seen = max(int(stored_ns[i]), latest.get(key, 0))
        if seen and new_ns[i] <= seen:
            stale[i] = True
        else:
            latest[key] = int(new_ns[i])
    return stale


def _behind(encoder: ViewEncoder, sender: Sender, rows: pa.RecordBatch, stored_ns: np.ndarray) -> np.ndarray:
    """Of rows Feast kept its stored values for, those whose packed record does not carry the
    stored timestamp (lost, or written by an older path): they need repacking from Feast's hash."""
    packed = encoder.packed_keys(rows)
    heads = sender.send(packed, [command(b"GETRANGE", key, b"0", b"7") for key in packed])
    record_us = np.array([struct.unpack("<q", h)[0] if len(h) == 8 else -1 for h in heads], dtype=np.int64)
    return np.flatnonzero(record_us != stored_ns // 1000)
