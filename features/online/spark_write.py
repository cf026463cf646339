"""Refresh Feast's Redis online store and the packed view from Spark, one pass, incremental.

Spark reads a view's batch source (its Parquet files), picks each entity's latest row in the window
as Feast's materialize does (newest event time, then newest created time), and every partition is
written by a Python worker (`mapInArrow`) with the batch writer's encoders: Feast's hash and the
packed record of each row, pipelined (features/online/encode.py). Only counts come back to the
driver, so memory is bounded by Spark's batches, whatever the table's size.

Incremental: after a refresh, a marker beside the view's packed layout records the window of rows
it has considered (`covered`). A later window that does not start before it needs no read of the
store:

- a row no newer than `covered`'s end is as old as what the store holds for its entity: Feast's
  staleness rule keeps the stored row, so it is not sent (and not read back);
- an entity's newer row whose values equal its latest row inside `covered` (within this window) is
  what the store holds already: it is not sent either. Its online event time stays the time the
  value last changed; Feast's Redis store does not enforce view TTLs at read, nor does Loupe's
  reader for these views, so the served values are the same.
- of a newer row that differs, only the features whose values differ (and the event time) go to
  Feast's hash, which holds the others already: an HSET's server time grows with its fields (a
  daily row of `viewer_author` changes 1-3 of its 26, its ages and decayed score); the packed
  record is rewritten whole (one value). An entity new to the store gets every feature.

No marker (a first refresh, a flushed store, a new layout generation), a window starting before
`covered`, or Feast's key TTL (unchanged keys would expire): a full refresh, which reads each key's
stored event time and applies Feast's staleness rule row by row, as `write_window` does.

tests/features/test_online_spark_write.py compares the result with Feast's materialize.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureStore, FeatureView, FileSource
from feast.infra.key_encoding_utils import deserialize_entity_key
from feast.utils import _get_column_names
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from data.redis_client import ClientSpec
from features.online.bulk_write import split_views, write_batch
from features.online.encode import ViewEncoder
from features.online.layout import DEFAULT_NAMESPACE, PackedViewLayout
from features.online.packer import PackedViewWriter, _aware, materialize_packed
from features.online.transport import sender_for

_CHANGED = "__loupe_changed"  # helper columns of the joined rows; source columns never start with it
_FIELDS = "__loupe_fields"  # per feature: whether its value differs from the stored row's (incremental)
_PREV = "__loupe_prev_"
_STATS = "rows long, written long, unchanged long, kept long, fields long, behind array<binary>"
_STATS_ARROW = pa.schema([("rows", pa.int64()), ("written", pa.int64()), ("unchanged", pa.int64()),
                          ("kept", pa.int64()), ("fields", pa.int64()), ("behind", pa.list_(pa.binary()))])


@dataclass(frozen=True)
class Refreshed:
    """One view's refresh. `rows`: entities with a row in the window newer than what the store
    holds (a full refresh: every entity in the window)."""

    view: str
    mode: str  # "incremental" or "full" (and why)
    rows: int
    written: int  # entities whose hash and packed record were written
    unchanged: int  # newer rows with the stored values: not sent (incremental)
    kept: int  # rows Feast's staleness rule left to the stored hash (full refresh)
    repacked: int  # packed records rebuilt from Feast's hash (lost or behind it)
    fields: int = 0  # feature values sent to Feast's hashes (incremental: only the changed ones)
    features: int = 0  # the view's features

    @property
    def changed_fraction(self) -> float:
        return self.written / self.rows if self.rows else 0.0

    @property
    def changed_field_fraction(self) -> float:
        """Of the written entities' feature values, the share sent to Feast's hashes."""
        return self.fields / (self.written * self.features) if self.written and self.features else 0.0


@dataclass(frozen=True)
class Covered:
    start: datetime
    end: datetime

    def to_json(self) -> str:
        return json.dumps({"start": self.start.isoformat(), "end": self.end.isoformat()})

    @classmethod
    def parse(cls, raw: bytes | None) -> Covered | None:
        if not raw:
            return None
        doc = json.loads(raw)
        return cls(datetime.fromisoformat(doc["start"]), datetime.fromisoformat(doc["end"]))


def marker_key(layout: PackedViewLayout) -> bytes:
    """Where a refresh records the rows it has considered: beside the layout generation it wrote."""
    return layout.key_prefix + b"_refreshed"


def refreshed_window(store: FeatureStore, view: str, client: Any = None,
                     namespace: str = DEFAULT_NAMESPACE) -> Covered | None:
    """The window of `view`'s rows the online store has been refreshed with (None: unknown)."""
    writer = PackedViewWriter(store, client, namespace=namespace)
    return Covered.parse(writer.client.get(marker_key(writer.layout(view))))


def spark_refusal(fv: FeatureView) -> str | None:
    """Why Spark cannot read `fv`'s rows itself (Feast's own path writes them), or None."""
    if not isinstance(fv.batch_source, FileSource):
        return f"a {type(fv.batch_source).__name__} batch source (Spark reads Parquet files)"
    if fv.batch_source.file_format is not None and type(fv.batch_source.file_format).__name__ != "ParquetFormat":
        return "not Parquet"
    return None


def refresh_window(
    spark: SparkSession,
    store: FeatureStore,
    start_date: datetime,
    end_date: datetime,
    feature_views: Sequence[str] | None = None,
    *,
    client: Any = None,
    namespace: str = DEFAULT_NAMESPACE,
    incremental: bool = True,
) -> dict[str, Refreshed]:
    """Feast's online store and the packed view for [start_date, end_date], written from Spark;
    the registry records the window as materialize does. A view Spark cannot write (Feast's
    transformations, another source) goes through `materialize_packed`."""
    writer = PackedViewWriter(store, client, namespace=namespace)
    start, end = _aware(start_date), _aware(end_date)
    views, slow = split_views(writer, feature_views, spark_refusal)
    out: dict[str, Refreshed] = {}
    if slow:
        for name, stats in materialize_packed(store, start, end, slow, client=writer.client,
                                              namespace=namespace).items():
            n = len(views[name].features)
            out[name] = Refreshed(name, "full: Feast's materialize", stats.entities_read, stats.written, 0, 0, 0,
                                  stats.written * n, n)
            writer.client.set(marker_key(writer.layout(name)), Covered(start, end).to_json())
    for name, fv in views.items():
        if name not in slow:
            out[name] = _ViewRefresh(spark, writer, fv).run(start, end, incremental)
            store.registry.apply_materialization(fv, store.project, start, end)
    return {name: out[name] for name in views}


class _ViewRefresh:
    def __init__(self, spark: SparkSession, writer: PackedViewWriter, fv: FeatureView):
        self.spark, self.writer, self.fv = spark, writer, fv
        self.encoder = ViewEncoder.of(writer, fv)
        self.layout = self.encoder.layout
        self.marker = marker_key(self.layout)
        self.keys = list(self.encoder.key_types)
        self.ts = fv.batch_source.timestamp_field
        self.created = fv.batch_source.created_timestamp_column or None

    def run(self, start: datetime, end: datetime, incremental: bool) -> Refreshed:
        client = self.writer.client
        covered = Covered.parse(client.get(self.marker)) if incremental else None
        why = self._why_full(covered, start, incremental)
        rows = self._window(start, end)
        if why is not None:
            mode, to_write = f"full: {why}", self._latest(rows).withColumn(_CHANGED, F.lit(True))
        else:  # nothing to send when the window holds nothing newer than the store
            mode, to_write = "incremental", self._changes(rows, covered.end) if end > covered.end else None
        written = self._write(to_write, check_stored=why is not None) if to_write is not None else _Written()
        repacked = 0
        if written.behind:  # the packer's path: read back what Feast's hash holds
            protos = [deserialize_entity_key(key[: -len(self.encoder.project)], self.encoder.version)
                      for key in written.behind]
            repacked = self.writer.pack_entities(self.fv, protos).written
        client.set(self.layout.meta_key, json.dumps(self.layout.meta()))
        # considered so far: a window after a gap claims nothing about the gap's rows
        grown = Covered(start, end) if why is not None or start > covered.end else \
            Covered(covered.start, max(covered.end, end))
        client.set(self.marker, grown.to_json())
        return Refreshed(self.fv.name, mode, written.rows, written.written, written.unchanged, written.kept,
                         repacked, written.fields, len(self.fv.features))

    def _why_full(self, covered: Covered | None, start: datetime, incremental: bool) -> str | None:
        if not incremental:
            return "asked for"
        if self.encoder.key_ttl_s:
            return "Feast's key TTL is set (unchanged keys would expire)"
        if covered is None:
            return "no earlier refresh of this layout in the store"
        if start < covered.start:  # its older rows may or may not be what the store holds
            return f"the window starts before the refreshed {covered.start} .. {covered.end}"
        return None

    # --- Spark ----------------------------------------------------------------------------------
    def _window(self, start: datetime, end: datetime) -> DataFrame:
        """The source's rows in [start, end], columns named as Feast names them (field mapping)."""
        entities = [self.writer.store.get_entity(name) for name in self.fv.entities]
        join_cols, feature_cols, ts_col, created_col = _get_column_names(self.fv, entities)
        columns = [*join_cols, *feature_cols, ts_col, *([created_col] if created_col else [])]
        source = self.spark.read.parquet(self.fv.batch_source.path).select(*columns)
        for col in (ts_col, created_col):  # nanoseconds read as longs (data.spark): to µs, as Feast truncates
            if col and isinstance(source.schema[col].dataType, T.LongType):
                source = source.withColumn(col, F.timestamp_micros(F.expr(f"`{col}` div 1000")))
        source = source.where(F.col(ts_col).between(F.lit(start), F.lit(end)))
        mapping = self.fv.batch_source.field_mapping or {}
        renamed = {col: mapping[col] for col in columns if col in mapping}
        return source.withColumnsRenamed(renamed) if renamed else source

    def _latest(self, rows: DataFrame) -> DataFrame:
        """Each entity's latest row (Feast's dedupe: newest event time, then newest created time)."""
        order = [F.col(self.ts).desc(), *([F.col(self.created).desc()] if self.created else [])]
        rank = F.row_number().over(Window.partitionBy(*self.keys).orderBy(*order))
        return rows.withColumn("__loupe_rank", rank).where("__loupe_rank = 1").drop("__loupe_rank")

    def _changes(self, rows: DataFrame, covered_end: datetime) -> DataFrame:
        """Each entity's latest row newer than `covered_end`, flagged where its values differ from
        its latest row at or before it (or it has none there), with which features differ: the
        stored hash holds the others, so only these are sent (all for an entity new to the store)."""
        newer = self._latest(rows.where(F.col(self.ts) > F.lit(covered_end)))
        features = [f.name for f in self.fv.features]
        before = self._latest(rows.where(F.col(self.ts) <= F.lit(covered_end))).select(
            *self.keys, F.lit(True).alias(_PREV), *[F.col(f).alias(_PREV + f) for f in features])
        differs: list[Column] = [~F.col(f).eqNullSafe(F.col(_PREV + f)) for f in features]  # NaN = NaN
        new = F.col(_PREV).isNull()
        joined = newer.join(before, on=self.keys, how="left")
        return joined.withColumn(_CHANGED, new | reduce(operator.or_, differs)).withColumn(
            _FIELDS, F.when(new, F.array(*[F.lit(True)] * len(features))).otherwise(F.array(*differs)))

    def _write(self, rows: DataFrame, check_stored: bool) -> _Written:
        source_columns = [*self.keys, *(f.name for f in self.fv.features), self.ts,
                          *([self.created] if self.created else [])]
        partial = _FIELDS in rows.columns
        write = _PartitionWriter(self.encoder, ClientSpec(self.writer.client), source_columns, check_stored, partial)
        stats = rows.select(*source_columns, _CHANGED, *([_FIELDS] if partial else [])).mapInArrow(
            write, _STATS).collect()
        return _Written(sum(r.rows for r in stats), sum(r.written for r in stats),
                        sum(r.unchanged for r in stats), sum(r.kept for r in stats), sum(r.fields for r in stats),
                        [key for r in stats for key in r.behind])


@dataclass(frozen=True)
class _Written:
    rows: int = 0
    written: int = 0
    unchanged: int = 0
    kept: int = 0
    fields: int = 0
    behind: list[bytes] = field(default_factory=list)  # Feast keys whose packed record needs repacking


class _PartitionWriter:
    """Runs in Spark's Python workers: writes its partition's changed rows, returns counts."""

    def __init__(self, encoder: ViewEncoder, client: ClientSpec, columns: list[str], check_stored: bool,
                 partial: bool):
        """`partial`: the rows carry which features changed (`_FIELDS`): only those go to Feast's hash."""
        self.encoder, self.client = encoder, client
        self.columns, self.check_stored, self.partial = columns, check_stored, partial

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        client = self.client()  # one server's, or a cluster's (commands routed per node)
        sender = sender_for(client)
        try:
            for batch in batches:
                keep = batch.column(_CHANGED)
                rows = batch.select(self.columns).filter(keep)
                changed = _matrix(batch.column(_FIELDS).filter(keep), len(self.encoder.fv.features)) \
                    if self.partial else None
                done = write_batch(self.encoder, sender, rows, self.check_stored, changed) if rows.num_rows else None
                behind = self.encoder.feast_keys(rows.take(pa.array(done.behind))) if done and len(done.behind) else []
                yield pa.RecordBatch.from_pydict({
                    "rows": [batch.num_rows], "written": [done.written if done else 0],
                    "unchanged": [batch.num_rows - rows.num_rows], "kept": [done.kept if done else 0],
                    "fields": [0 if done is None else int(changed.sum()) if changed is not None
                               else done.written * len(self.encoder.fv.features)],
                    "behind": [behind]}, schema=_STATS_ARROW)
        finally:
            client.close()


def _matrix(flags: pa.Array, width: int) -> np.ndarray:
    """A list<bool> column of `width` flags a row (no nulls) as a rows x width bool matrix."""
    return pc.list_flatten(flags).to_numpy(zero_copy_only=False).reshape(len(flags), width)
