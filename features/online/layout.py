"""The packed-vector layout in Redis: one string per (feature view, entity key).

This module is the executable form of `docs/online_reader.md`; keep the two in step.

    key   = <namespace>:<project>:<view>:v<LAYOUT_VERSION>.<fingerprint>:<k1>[:<k2>...]
    value = int64 event_ts_us | float32 x n (view's numeric features, declared order) | null bitmap

Everything is little-endian and fixed-size per view, so a batch of replies decodes with one
`np.frombuffer`. The fingerprint hashes the layout version, the join keys (+ types) and the packed
feature names (+ types), so a changed definition reads a different key and can never be misread.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from feast import FeatureView
from feast.types import Bool, Float32, Float64, Int32, Int64, String

LAYOUT_VERSION = 1
DEFAULT_NAMESPACE = "loupe:pv"

# Feast dtype name -> how it is packed. Everything numeric becomes float32 in the vector.
PACKABLE_DTYPES = {str(t): t for t in (Int32, Int64, Float32, Float64, Bool)}
# Join key dtype name -> how a value is written into the key.
KEY_DTYPES = {str(Int32): "int", str(Int64): "int", str(String): "str"}

TS_MISSING = np.iinfo(np.int64).min  # event_ts_us of an entity with no record


def _escape_str_key(value: str) -> bytes:
    """Percent-escape the two bytes that structure a key, so string parts stay unambiguous."""
    return value.replace("%", "%25").replace(":", "%3A").encode("utf-8")


@dataclass(frozen=True)
class PackedViewLayout:
    """How one feature view is stored as packed vectors; built from the Feast definition."""

    project: str
    view: str
    join_keys: tuple[str, ...]  # sorted by name: the order of the parts of the entity key
    join_key_dtypes: tuple[str, ...]  # Feast dtype names, "Int64" / "Int32" / "String"
    features: tuple[str, ...]  # packed features, in the view's declared schema order
    feature_dtypes: tuple[str, ...]  # Feast dtype names
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        for name, dtype in zip(self.join_keys, self.join_key_dtypes):
            if dtype not in KEY_DTYPES:
                raise TypeError(f"{self.view}: join key {name!r} has unsupported type {dtype}")
        for name, dtype in zip(self.features, self.feature_dtypes):
            if dtype not in PACKABLE_DTYPES:
                raise TypeError(f"{self.view}: feature {name!r} of type {dtype} cannot be packed")
        if list(self.join_keys) != sorted(self.join_keys):
            raise ValueError("join_keys must be sorted by name")

    @classmethod
    def from_feature_view(
        cls, fv: FeatureView, project: str, namespace: str = DEFAULT_NAMESPACE
    ) -> PackedViewLayout:
        """All numeric features of `fv` (others are skipped: the reader refuses to serve them)."""
        key_types = {f.name: str(f.dtype) for f in fv.entity_columns}
        join_keys = tuple(sorted(fv.join_keys))
        missing = [k for k in join_keys if k not in key_types]
        if missing:
            raise ValueError(f"{fv.name}: no dtype known for join keys {missing}")
        packed = [f for f in fv.features if str(f.dtype) in PACKABLE_DTYPES]
        return cls(
            project=project,
            view=fv.name,
            join_keys=join_keys,
            join_key_dtypes=tuple(key_types[k] for k in join_keys),
            features=tuple(f.name for f in packed),
            feature_dtypes=tuple(str(f.dtype) for f in packed),
            namespace=namespace,
        )

    # --- identity -------------------------------------------------------------------------------
    @cached_property
    def fingerprint(self) -> str:
        spec = {
            "layout": LAYOUT_VERSION,
            "join_keys": list(zip(self.join_keys, self.join_key_dtypes)),
            "features": list(zip(self.features, self.feature_dtypes)),
        }
        blob = json.dumps(spec, separators=(",", ":"), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:8]

    @cached_property
    def key_prefix(self) -> bytes:
        return (
            f"{self.namespace}:{self.project}:{self.view}:v{LAYOUT_VERSION}.{self.fingerprint}:"
        ).encode()

    @cached_property
    def view_prefix(self) -> bytes:
        """Prefix shared by every layout generation of this view (used to purge old ones)."""
        return f"{self.namespace}:{self.project}:{self.view}:".encode()

    @property
    def meta_key(self) -> bytes:
        """A small JSON document describing this generation (for humans and `check`)."""
        return self.key_prefix + b"_meta"

    def meta(self) -> dict[str, Any]:
        return {
            "layout_version": LAYOUT_VERSION,
            "fingerprint": self.fingerprint,
            "project": self.project,
            "view": self.view,
            "join_keys": list(self.join_keys),
            "join_key_dtypes": list(self.join_key_dtypes),
            "features": list(self.features),
            "feature_dtypes": list(self.feature_dtypes),
            "record_bytes": self.record_size,
        }

    # --- values -------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return len(self.features)

    @cached_property
    def record_dtype(self) -> np.dtype:
        n = self.n_features
        return np.dtype(
            [("ts", "<i8"), ("values", "<f4", (n,)), ("nulls", "u1", ((n + 7) // 8,))]
        )

    @property
    def record_size(self) -> int:
        return self.record_dtype.itemsize

    def encode(self, event_ts_us: np.ndarray, values: np.ndarray, nulls: np.ndarray) -> list[bytes]:
        """Records for m entities: timestamps (m,) int64 µs, values (m, n), nulls (m, n) bool."""
        m = len(event_ts_us)
        rec = np.zeros(m, dtype=self.record_dtype)
        rec["ts"] = event_ts_us
        vals = np.asarray(values, dtype=np.float32).reshape(m, self.n_features)
        nulls = np.asarray(nulls, dtype=bool).reshape(m, self.n_features)
        rec["values"] = np.where(nulls, np.float32(np.nan), vals)
        rec["nulls"] = np.packbits(nulls, axis=1, bitorder="little").reshape(m, -1)
        raw = rec.tobytes()
        size = self.record_size
        return [raw[i * size : (i + 1) * size] for i in range(m)]

    def decode(self, raw: bytes) -> np.ndarray:
        """Concatenated records -> structured array (fields ts, values, nulls)."""
        return np.frombuffer(raw, dtype=self.record_dtype)

    def null_mask(self, records: np.ndarray) -> np.ndarray:
        bits = np.unpackbits(records["nulls"], axis=1, bitorder="little", count=self.n_features)
        return bits.astype(bool)

    # --- keys ---------------------------------------------------------------------------------
    @cached_property
    def key_template(self) -> bytes:
        """`key_prefix` + one `%d` / `%s` per join key, joined by ':' (for `template % parts`)."""
        parts = [b"%d" if KEY_DTYPES[d] == "int" else b"%s" for d in self.join_key_dtypes]
        return self.key_prefix.replace(b"%", b"%%") + b":".join(parts)

    def entity_keys(self, columns: Mapping[str, Any] | Sequence[Any]) -> list[bytes]:
        """Redis keys for aligned join-key columns (a mapping by join key, or in `join_keys` order)."""
        if isinstance(columns, Mapping):
            cols = [columns[k] for k in self.join_keys]
        else:
            cols = list(columns)
        prepared: list[list[Any]] = [
            _int_column(c) if KEY_DTYPES[d] == "int" else [_escape_str_key(str(v)) for v in c]
            for c, d in zip(cols, self.join_key_dtypes)
        ]
        if len(prepared) == 1:
            prefix = self.key_prefix
            if KEY_DTYPES[self.join_key_dtypes[0]] == "int":
                return [prefix + b"%d" % v for v in prepared[0]]
            return [prefix + v for v in prepared[0]]
        template = self.key_template
        return [template % parts for parts in zip(*prepared)]


def _int_column(column: Any) -> list[int]:
    arr = np.asarray(column)
    if arr.size == 0:
        return []
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind != "O":
            raise TypeError(f"integer join key expected, got {arr.dtype}")
        arr = arr.astype(np.int64)  # a list of Python ints (None/str raise here)
    return arr.tolist()
