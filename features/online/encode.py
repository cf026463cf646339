"""Rows of one feature view as Feast's Redis online store and the packed view hold them, from Arrow.

`ViewEncoder` builds, for a batch of rows, what Feast's `materialize` would write (its entity-key
encoding, its hash fields and value protobufs, its timestamp field and key TTL) and the packed record
beside it, with numpy instead of a protobuf object per value. It holds no client and no store, so it
travels to Spark's Python workers (features/online/spark_write.py); the batch writer
(features/online/bulk_write.py) and the stream processor use it too.

tests/features/test_online_bulk_write.py proves the bytes equal Feast's, key for key.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.types import Array, Float32, Float64, Int32, Int64, String
from feast.utils import _columns_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from features.online.layout import PackedViewLayout
from features.online.transport import bulk, command

# A Float32 / Float64 value's protobuf: the oneof field's tag, then the value little-endian.
_FIXED_VALUES = {str(Float32): (b"\x35", "<f4"), str(Float64): (b"\x29", "<f8")}
# list types built straight into their Value proto field (`list_values`)
_LIST_VALUES = {str(Array(Int64)): "int64_list_val", str(Array(String)): "string_list_val"}  # Value's field
# Integer join keys as Feast's entity-key encoding writes them: (value type, size, numpy format).
_INT_KEYS = {str(Int64): (ValueType.INT64, 8, "<i8"), str(Int32): (ValueType.INT32, 4, "<i4")}


@dataclass(frozen=True)
class EncodedRows:
    """Rows of one view as Feast's online store and the packed view hold them."""

    feast_keys: list[bytes]  # Feast's Redis key (entity key + project) per row
    hset_args: list[bytes]  # per row, HSET's field-value pairs RESP-encoded: `_ts:<view>`, then each feature
    hset_features: list[int] | None  # per row, how many features' pairs (`changed`); None: every feature's
    packed_keys: list[bytes]  # empty for a view with no numeric feature (nothing to pack)
    records: list[bytes]


class ViewEncoder:
    """Feast's hash and the packed record of one view's rows. `siblings`: the packed layouts sharing
    Feast's hash (same join keys), whose expiry a write re-arms when Feast's key TTL is set."""

    def __init__(self, fv: FeatureView, layout: PackedViewLayout, config: RepoConfig,
                 siblings: list[PackedViewLayout] = ()):
        self.fv, self.layout = fv, layout
        self.version = config.entity_key_serialization_version
        self.project = config.project.encode("utf-8")
        name = _versioned_fv_name(fv, config)
        self.ts_field = f"_ts:{name}".encode()
        self.fields = {f.name: _mmh3(f"{name}:{f.name}") for f in fv.features}
        self.key_types = {f.name: f.dtype.to_value_type() for f in fv.entity_columns}
        dtypes = {f.name: str(f.dtype) for f in fv.entity_columns}
        # integer keys in v3: encoded for a whole batch at once; others through Feast's function
        self.int_keys = dtypes if self.version >= 3 and all(d in _INT_KEYS for d in dtypes.values()) else None
        self.key_ttl_s = getattr(config.online_store, "key_ttl_seconds", None) or None
        self.siblings = list(siblings) if self.key_ttl_s else []

    @classmethod
    def of(cls, writer, fv: FeatureView) -> ViewEncoder:
        """The encoder of `fv` in `writer`'s store and namespace (a features.online.packer.PackedViewWriter)."""
        layout = writer.layout(fv)
        return cls(fv, layout, writer.store.config, writer.siblings(fv, layout))

    def encode_rows(self, rows: pa.RecordBatch, ts_us: np.ndarray, keys: list[bytes] | None = None,
                    changed: np.ndarray | None = None) -> EncodedRows:
        """Each row's Feast hash arguments (1 + len(features) field-value pairs) and packed record, as
        `write_window` sends them. `keys`: Feast's keys of the rows, if already built. `changed` (rows x
        features, bool): only those features' pairs (and `_ts`), for rows whose hash holds the others
        already (Spark's incremental refresh); the packed record is whole either way."""
        values, nulls = self._packed_values(rows)
        packed = bool(self.layout.n_features)
        stamps = _TimestampCell(self.ts_field)
        cells, counts = (self._feast_cells(rows), None) if changed is None else self._changed_cells(rows, changed)
        return EncodedRows(
            feast_keys=self.feast_keys(rows) if keys is None else keys,
            hset_args=[stamps[ts] + row for ts, row in zip(ts_us.tolist(), cells)],
            hset_features=counts,
            packed_keys=self.layout.entity_keys(
                [rows.column(k).to_numpy(zero_copy_only=False) for k in self.layout.join_keys]) if packed else [],
            records=self.layout.encode(ts_us, values, nulls) if packed else [])

    def hset_commands(self, encoded: EncodedRows) -> list[bytes]:
        """Each row's Feast hash write: HSET <key> `_ts` + one field per feature (or per changed one)."""
        if encoded.hset_features is None:
            head = _hset_head(len(self.fv.features))
            return [head + bulk(key) + args for key, args in zip(encoded.feast_keys, encoded.hset_args)]
        return [_hset_head(n) + bulk(key) + args
                for key, args, n in zip(encoded.feast_keys, encoded.hset_args, encoded.hset_features)]

    def write_commands(self, rows: pa.RecordBatch, ts_us: np.ndarray, keys: list[bytes] | None = None,
                       per_key: bool = False, changed: np.ndarray | None = None) -> tuple[list[bytes], list[bytes]]:
        """Everything one write of these rows sends, and each command's key: Feast's hash of each row
        (+ its key TTL, as Feast: EXPIRE after each HSET) and the packed records (one MSET without a
        TTL; one SET each when `per_key`, for a Redis Cluster, where a command keeps to one key's slot)."""
        encoded = self.encode_rows(rows, ts_us, keys, changed)
        records, packed_keys, feast_keys = encoded.records, encoded.packed_keys, encoded.feast_keys
        commands, keyed = self.hset_commands(encoded), list(feast_keys)
        if self.key_ttl_s:  # the packed key and its siblings follow Feast's key TTL
            ttl, px = b"%d" % self.key_ttl_s, b"%d" % (self.key_ttl_s * 1000)
            sibling_keys = [key for s in self.siblings for key in s.entity_keys(
                [rows.column(k).to_numpy(zero_copy_only=False) for k in s.join_keys])]
            commands += [command(b"EXPIRE", key, ttl) for key in feast_keys]
            commands += [command(b"SET", key, record, b"PX", px) for key, record in zip(packed_keys, records)]
            commands += [command(b"PEXPIRE", key, px) for key in sibling_keys]
            keyed += [*feast_keys, *packed_keys, *sibling_keys]
        elif per_key:
            commands += [command(b"SET", key, record) for key, record in zip(packed_keys, records)]
            keyed += packed_keys
        elif packed_keys:
            commands.append(command(b"MSET", *[part for pair in zip(packed_keys, records) for part in pair]))
            keyed.append(packed_keys[0])
        return keyed, commands

    def packed_keys(self, rows: pa.RecordBatch) -> list[bytes]:
        return self.layout.entity_keys([rows.column(k).to_numpy(zero_copy_only=False)
                                        for k in self.layout.join_keys])

    def feast_keys(self, batch: pa.RecordBatch) -> list[bytes]:
        """Feast's Redis key of each row: serialize_entity_key + project."""
        if self.int_keys:
            return int_entity_keys(batch, self.int_keys, self.project)
        return [serialize_entity_key(p, self.version) + self.project for p in self.protos(batch)]

    def protos(self, batch: pa.RecordBatch) -> list[EntityKeyProto]:
        values = _columns_to_proto_values(batch, list(self.key_types.items()), allow_missing=False)
        names = list(self.key_types)
        return [EntityKeyProto(join_keys=names, entity_values=list(row))
                for row in zip(*(values[k] for k in names))]

    def _changed_cells(self, rows: pa.RecordBatch, changed: np.ndarray) -> tuple[list[bytes], list[int]]:
        """Each row's changed features as HSET arguments, and how many: the rows are grouped by which
        features changed (a day's rows share a few such sets), each group encoded as `_feast_cells`."""
        out = [b""] * rows.num_rows
        counts = np.zeros(rows.num_rows, dtype=np.int64)
        masks, group = np.unique(np.asarray(changed, dtype=bool), axis=0, return_inverse=True)
        for g, mask in enumerate(masks):
            at = np.flatnonzero(group.reshape(-1) == g)
            features = [f for f, keep in zip(self.fv.features, mask) if keep]
            if features:
                for i, cells in zip(at.tolist(), self._feast_cells(rows.take(pa.array(at)), features)):
                    out[i] = cells
            counts[at] = len(features)
        return out, counts.tolist()

    def _feast_cells(self, rows: pa.RecordBatch, features: list | None = None) -> list[bytes]:
        """Each row's features (all, or these) as HSET arguments (RESP field, value pairs), as
        Feast's materialize writes them: a Float32/Float64 value is its fixed-size protobuf (built for
        all rows at once with numpy), a null or NaN the empty protobuf, any other type Feast's own
        converter's."""
        features = self.fv.features if features is None else features
        fixed = [f for f in features if str(f.dtype) in _FIXED_VALUES]
        others = [f for f in features if str(f.dtype) not in _FIXED_VALUES]
        n = rows.num_rows
        out = [b""] * n
        if fixed:
            layout, columns = [], []
            for j, feature in enumerate(fixed):
                tag, fmt = _FIXED_VALUES[str(feature.dtype)]
                field = bulk(self.fields[feature.name])
                size = np.dtype(fmt).itemsize + 1
                layout += [(f"field{j}", f"V{len(field)}"), (f"size{j}", f"V{len(str(size)) + 3}"),
                           (f"tag{j}", "u1"), (f"value{j}", fmt), (f"end{j}", "V2")]
                columns.append((field, b"$%d\r\n" % size, tag, fmt,
                                rows.column(feature.name).to_numpy(zero_copy_only=False).astype(fmt)))
            cells = np.zeros(n, dtype=np.dtype(layout))
            for j, (field, size, tag, _, values) in enumerate(columns):
                cells[f"field{j}"], cells[f"size{j}"] = np.void(field), np.void(size)
                cells[f"end{j}"] = np.void(b"\r\n")
                cells[f"tag{j}"], cells[f"value{j}"] = tag[0], values
            raw, width = cells.tobytes(), cells.itemsize
            out = [raw[i:i + width] for i in range(0, len(raw), width)]
            null = np.zeros(n, dtype=bool)
            for *_, values in columns:
                null |= np.isnan(values)
            for i in np.flatnonzero(null).tolist():  # a row with a null: its cells one by one
                out[i] = b"".join(
                    field + (b"$0\r\n\r\n" if np.isnan(values[i]) else
                             size + tag + values[i].tobytes() + b"\r\n")
                    for field, size, tag, fmt, values in columns)
        if others:
            extra = zip(*(self._other_cells(rows, f) for f in others))
            out = [cells + b"".join(more) for cells, more in zip(out, extra)]
        return out

    def _other_cells(self, rows: pa.RecordBatch, feature) -> list[bytes]:
        """One feature's HSET field-value pairs, by `list_values` where it applies, else by Feast's
        own converter (exact for every type, at its speed)."""
        field = bulk(self.fields[feature.name])
        values = list_values(rows.column(feature.name), str(feature.dtype))
        if values is None:
            protos = _columns_to_proto_values(rows, [(feature.name, feature.dtype.to_value_type())],
                                              allow_missing=False)
            values = [p.SerializeToString() for p in protos[feature.name]]
        return [field + bulk(v) for v in values]

    def _packed_values(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """The packed features as float32 (rows, k) and their nulls (null or NaN: Feast's null)."""
        n, k = batch.num_rows, self.layout.n_features
        values = np.zeros((n, k), dtype=np.float32)
        nulls = np.ones((n, k), dtype=bool)
        for j, name in enumerate(self.layout.features):
            column = batch.column(name)
            if column.null_count == 0 and pa.types.is_floating(column.type):  # as it is (the stream's rows)
                as_float = column.to_numpy()
            else:
                as_float = pc.fill_null(column.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
            nulls[:, j] = np.isnan(as_float)
            values[:, j] = np.where(nulls[:, j], 0.0, as_float)
        return values, nulls


@cache
def _hset_head(features: int) -> bytes:
    """HSET's header for a hash write of `_ts` and this many features' pairs."""
    return b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (1 + features))


def list_values(column: pa.Array, dtype: str) -> list[bytes] | None:
    """A list column without nulls as its serialized Value protos, built straight from the lists
    (what Feast's converter builds, ~10x faster: the stream feature worker writes every engaged
    viewer's sequence). None for any other column."""
    name = _LIST_VALUES.get(dtype)
    if name is None or column.null_count:
        return None
    items = pc.list_flatten(column)
    if items.null_count:
        return None
    flat = items.to_pylist()  # one conversion for all rows, not one per row
    bounds = pc.list_value_length(column).to_numpy(zero_copy_only=False).cumsum().tolist()
    out = []
    for a, b in zip([0, *bounds], bounds):
        value = ValueProto()
        getattr(value, name).val.extend(flat[a:b])  # faster in upb than building the list message by keyword
        out.append(value.SerializeToString())
    return out

def int_entity_keys(batch: pa.RecordBatch, key_dtypes: Mapping[str, str], project: bytes) -> list[bytes]:
    """Feast's Redis key of each row for integer join keys (Int64 / Int32): serialize_entity_key
    (v3: key count, the sorted key names, then each value's type, size and bytes) + project,
    built for the whole batch in one numpy record array."""
    names = sorted(key_dtypes)
    header = struct.pack("<I", len(names)) + b"".join(
        struct.pack("<II", ValueType.STRING.value, len(k.encode())) + k.encode() for k in names)
    fields = [("header", f"V{len(header)}")]
    for j, name in enumerate(names):
        fields += [(f"type{j}", "<u4"), (f"size{j}", "<u4"), (f"value{j}", _INT_KEYS[key_dtypes[name]][2])]
    fields.append(("project", f"V{len(project)}"))
    rows = np.zeros(batch.num_rows, dtype=np.dtype(fields))
    rows["header"], rows["project"] = np.void(header), np.void(project)
    for j, name in enumerate(names):
        value_type, size, _ = _INT_KEYS[key_dtypes[name]]
        rows[f"type{j}"], rows[f"size{j}"] = value_type.value, size
        rows[f"value{j}"] = batch.column(name).to_numpy(zero_copy_only=False)
    raw, width = rows.tobytes(), rows.dtype.itemsize
    return [raw[i:i + width] for i in range(0, len(raw), width)]


class _TimestampCell(dict):
    """Epoch µs -> Feast's event-timestamp field and value as HSET arguments (RESP); a daily
    snapshot has one value, so each is encoded once."""

    def __init__(self, ts_field: bytes):
        super().__init__()
        self.field = bulk(ts_field)

    def __missing__(self, us: int) -> bytes:
        seconds, micros = divmod(us, 1_000_000)
        cell = self[us] = self.field + bulk(Timestamp(seconds=seconds, nanos=micros * 1000).SerializeToString())
        return cell


def timestamp_ns(raw: bytes | None) -> int:
    """A serialised protobuf Timestamp (Feast's `_ts` field) in ns; 0 when absent."""
    if not raw:
        return 0
    proto = Timestamp()
    proto.ParseFromString(raw)
    return proto.seconds * 1_000_000_000 + proto.nanos


def epoch_us(column: pa.Array) -> np.ndarray:
    """Event timestamps as epoch µs (a naive timestamp is UTC, as Feast's make_tzaware reads it)."""
    if not pa.types.is_timestamp(column.type):
        raise TypeError(f"event timestamps of type {column.type}: expected an Arrow timestamp")
    if column.null_count:
        raise ValueError("a row without an event timestamp cannot be written online")
    # to µs dropping sub-µs digits, as Feast's conversion through Python datetimes does
    micros = pc.cast(column, pa.timestamp("us", tz=column.type.tz), safe=False)
    return micros.cast(pa.int64()).to_numpy()
