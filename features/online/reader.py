"""Read a Feast FeatureService from the packed view: one MGET per request, a float32 block back.

    reader = PackedFeatureReader.from_feature_store(store, "ranking_v1", client=redis_client)
    block = reader.read({"viewer_id": [...], "post_id": [...], "author_id": [...]})
    block.values      # (n_rows, n_features) float32, the service's declared column order
    block.missing     # (n_rows, n_features) bool: True exactly where Feast returns None

Parity with `FeatureStore.get_online_features(service, rows).to_dict()` (tests/features/
test_online_reader.py): a value Feast returns is returned as float32; where Feast returns None
(unknown entity, null value, or a key Feast's `key_ttl_seconds` expired) `missing` is set and the
value is the feature's default (NaN unless configured). Like Feast's Redis store, the feature
view TTL is *not* enforced at read time unless `enforce_ttl=True` is asked for.
"""

from __future__ import annotations

import logging
import math
import operator
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any

import numpy as np
from feast import FeatureService, FeatureStore

from features.online.layout import DEFAULT_NAMESPACE, TS_MISSING, PackedViewLayout

logger = logging.getLogger(__name__)

EntityRows = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class OnlineFeatureBlock:
    """Features for n entity rows, columns in the feature service's declared order."""

    feature_names: tuple[str, ...]
    values: np.ndarray  # (n, f) float32; default where missing
    missing: np.ndarray  # (n, f) bool; True where Feast's to_dict() holds None
    view_names: tuple[str, ...]  # one per projection of the service (alias if any)
    view_found: np.ndarray  # (n, v) bool; a packed record exists for the row's entity
    view_stale: np.ndarray  # (n, v) bool; older than the view TTL (only with enforce_ttl)
    event_ts_us: np.ndarray  # (n, v) int64 µs since epoch; TS_MISSING (== NaT) if not found

    @property
    def event_timestamps(self) -> np.ndarray:
        """`event_ts_us` as datetime64[us] (NaT where not found), without a copy."""
        return self.event_ts_us.view("datetime64[us]")

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.feature_names.index(name)]

    def __len__(self) -> int:
        return self.values.shape[0]


@dataclass(frozen=True)
class _ViewRead:
    """One projection of the service: which packed view, which request columns, which slice."""

    name: str  # projection.name_to_use()
    layout: PackedViewLayout
    request_columns: tuple[str, ...]  # aligned with layout.join_keys (join_key_map applied)
    feature_index: np.ndarray  # positions in layout.features of the selected features
    out: slice  # columns of the output block
    ttl_us: int  # 0 = no TTL
    resp: bool = False  # keys travel pre-encoded (see _RespMget)
    key_cache: _KeyCache | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        all_int = "String" not in self.layout.join_key_dtypes
        cache = _KeyCache(self.layout, self.resp) if all_int else None
        object.__setattr__(self, "key_cache", cache)


class PackedFeatureReader:
    """Reads one FeatureService from the packed-vector view in Redis.

    Build it once (it resolves the service against the Feast registry) and call `read` per request.
    `client` is a redis-py `Redis` (or `RedisCluster`) with `decode_responses=False`.
    """

    def __init__(
        self,
        client: Any,
        views: Sequence[_ViewRead],
        feature_names: Sequence[str],
        defaults: np.ndarray,
        enforce_ttl: bool = False,
    ):
        self._client = client
        self._views = tuple(views)
        self.feature_names = tuple(feature_names)
        self.view_names = tuple(v.name for v in self._views)
        self.entity_columns = tuple(dict.fromkeys(c for v in self._views for c in v.request_columns))
        self._defaults = np.asarray(defaults, dtype=np.float32).reshape(1, -1)
        self._all_nan_defaults = bool(np.isnan(self._defaults).all())
        self.enforce_ttl = enforce_ttl
        if _plain_redis(client):
            self._mget = _RespMget(client)
            self._views = tuple(replace(v, resp=True) for v in self._views)
        else:  # Redis Cluster: mget_nonatomic splits by slot; anything else: its own mget
            self._mget = getattr(client, "mget_nonatomic", None) or client.mget

    # --- construction from Feast --------------------------------------------------------------
    @classmethod
    def from_feature_store(
        cls,
        store: FeatureStore,
        feature_service: str | FeatureService,
        *,
        client: Any = None,
        full_feature_names: bool = False,
        defaults: float | Mapping[str, float] = math.nan,
        enforce_ttl: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
        skip_on_demand: bool = False,
        extra_views: Sequence[str] = (),
    ) -> PackedFeatureReader:
        """Resolve `feature_service` in the registry; `client` defaults to Feast's own Redis config.

        `defaults`: the value for missing cells, one for all features or a mapping by output
        feature name (unlisted features: NaN). `full_feature_names` names columns
        `<view>__<feature>` exactly as Feast does. `skip_on_demand`: leave the service's on-demand
        views out (the caller computes them, e.g. features.online.ranking) instead of raising.
        `extra_views`: feature views the service does not list, read whole after its columns in
        the same MGET (e.g. the sources of an on-demand view the caller computes).
        """
        if client is None:
            from features.online.packer import redis_client_for

            client = redis_client_for(store)
        name = feature_service if isinstance(feature_service, str) else feature_service.name
        service = store.get_feature_service(name)
        on_demand_names = {v.name for v in store.list_on_demand_feature_views()} if skip_on_demand else set()
        views: list[_ViewRead] = []
        names: list[str] = []
        extra = [store.get_feature_view(v).projection for v in extra_views]
        for projection in [*service.feature_view_projections, *extra]:
            if projection.version_tag is not None:
                raise NotImplementedError(f"{name}: versioned projections are not supported")
            if skip_on_demand and projection.name in on_demand_names:
                continue
            try:
                fv = store.get_feature_view(projection.name)
            except Exception as exc:  # on-demand / unknown views: Feast-only territory
                raise NotImplementedError(
                    f"{name}: {projection.name!r} is not a plain FeatureView ({exc})"
                ) from exc
            if not fv.online:
                raise ValueError(f"{name}: feature view {fv.name!r} is not online")
            layout = PackedViewLayout.from_feature_view(fv, store.project, namespace)
            selected = [f.name for f in projection.features]
            unpackable = [f for f in selected if f not in layout.features]
            if unpackable:
                raise TypeError(f"{name}: {fv.name} features {unpackable} are not numeric")
            view_name = projection.name_to_use()
            start = len(names)
            names.extend(f"{view_name}__{f}" if full_feature_names else f for f in selected)
            ttl = fv.ttl.total_seconds() if fv.ttl else 0
            views.append(
                _ViewRead(
                    name=view_name,
                    layout=layout,
                    request_columns=tuple(
                        projection.join_key_map.get(k, k) for k in layout.join_keys
                    ),
                    feature_index=np.array(
                        [layout.features.index(f) for f in selected], dtype=np.intp
                    ),
                    out=slice(start, len(names)),
                    ttl_us=int(ttl * 1_000_000),
                )
            )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"{name}: feature names collide {dupes}; use full_feature_names=True (as Feast would)"
            )
        if isinstance(defaults, Mapping):
            unknown = set(defaults) - set(names)
            if unknown:
                raise KeyError(f"defaults for unknown features {sorted(unknown)}")
            default_row = np.array([defaults.get(n, math.nan) for n in names], dtype=np.float32)
        else:
            default_row = np.full(len(names), defaults, dtype=np.float32)
        return cls(client, views, names, default_row, enforce_ttl=enforce_ttl)

    @property
    def layouts(self) -> tuple[PackedViewLayout, ...]:
        return tuple(v.layout for v in self._views)

    @property
    def request_columns(self) -> tuple[tuple[str, ...], ...]:
        """Per projection: the entity-row columns its key is built from (join_key_map applied)."""
        return tuple(v.request_columns for v in self._views)

    def check(self) -> dict[str, bool]:
        """Per projection: has the current layout generation of its view been packed?"""
        flags = self._client.exists  # one EXISTS per view; not for the hot path
        return {v.name: bool(flags(v.layout.meta_key)) for v in self._views}

    # --- the hot path -------------------------------------------------------------------------
    def read(self, entity_rows: EntityRows, now: float | None = None) -> OnlineFeatureBlock:
        """Features for each entity row (columnar mapping, or Feast-style list of dicts).

        Rows whose entities were never materialized (or expired) come back missing; unknown
        entities never raise. `now` (epoch seconds) only matters with `enforce_ttl`.
        """
        columns, n = _columnar(entity_rows, self.entity_columns)
        n_features = len(self.feature_names)
        n_views = len(self._views)
        values = np.full((n, n_features), np.nan, dtype=np.float32)
        missing = np.ones((n, n_features), dtype=bool)
        found = np.zeros((n, n_views), dtype=bool)
        stale = np.zeros((n, n_views), dtype=bool)
        ts = np.full((n, n_views), TS_MISSING, dtype=np.int64)
        if n == 0:
            return OnlineFeatureBlock(
                self.feature_names, values, missing, self.view_names, found, stale, ts
            )

        # 1. keys: dedupe per view (the same author behind many posts is fetched once)
        plans = []
        keys: list[bytes] = []
        for view in self._views:
            unique_keys, inverse = _unique_keys(view, columns)
            plans.append((len(keys), len(unique_keys), inverse))
            keys.extend(unique_keys)

        # 2. one round trip
        replies = self._mget(keys)

        # 3. decode per view, scatter back to rows
        now_us = int((time.time() if now is None else now) * 1_000_000)
        for j, (view, (offset, count, inverse)) in enumerate(zip(self._views, plans)):
            layout = view.layout
            part = replies[offset : offset + count]
            hit = np.fromiter(map(operator.is_not, part, repeat(None)), dtype=bool, count=count)
            raw = b"".join(filter(None, part))
            if len(raw) != int(hit.sum()) * layout.record_size:
                hit, raw = _drop_malformed(part, layout)
            rec = layout.decode(raw)
            k = len(view.feature_index)
            u_values = np.full((count, k), np.nan, dtype=np.float32)
            u_missing = np.ones((count, k), dtype=bool)
            u_ts = np.full(count, TS_MISSING, dtype=np.int64)
            if len(rec):
                u_values[hit] = rec["values"][:, view.feature_index]
                u_missing[hit] = layout.null_mask(rec)[:, view.feature_index]
                u_ts[hit] = rec["ts"]
            if self.enforce_ttl and view.ttl_us:
                u_stale = hit & (u_ts < now_us - view.ttl_us)
                u_missing[u_stale] = True
                stale[:, j] = u_stale[inverse]
            values[:, view.out] = u_values[inverse]
            missing[:, view.out] = u_missing[inverse]
            found[:, j] = hit[inverse]
            ts[:, j] = u_ts[inverse]

        # 4. defaults (stored nulls are NaN already, so all-NaN defaults need no pass)
        if not self._all_nan_defaults or self.enforce_ttl:
            np.copyto(values, self._defaults, where=missing)
        return OnlineFeatureBlock(self.feature_names, values, missing, self.view_names, found, stale, ts)


def _columnar(entity_rows: EntityRows, needed: Sequence[str]) -> tuple[dict[str, Any], int]:
    if isinstance(entity_rows, Mapping):
        columns = dict(entity_rows)
    else:
        rows = list(entity_rows)
        columns = {c: [row[c] for row in rows] for c in needed} if rows else {c: [] for c in needed}
    absent = [c for c in needed if c not in columns]
    if absent:
        raise KeyError(f"entity rows lack join key columns {absent}")
    lengths = {len(columns[c]) for c in needed}
    if len(lengths) > 1:
        raise ValueError(f"entity columns differ in length: {sorted(lengths)}")
    return columns, (lengths.pop() if lengths else 0)


def _unique_keys(view: _ViewRead, columns: Mapping[str, Any]) -> tuple[list[bytes], np.ndarray]:
    """Distinct Redis keys (RESP-encoded if view.resp) of the request's entities for this view,
    and for each row the position of its key. Integer keys come from the per-view cache."""
    layout = view.layout
    cols = [np.asarray(columns[c]) for c in view.request_columns]
    if view.key_cache is not None and all(c.dtype.kind in "iu" for c in cols):
        if len(cols) == 1:  # dedupe the ints in numpy, then cache lookups
            uniq, inverse = np.unique(cols[0], return_inverse=True)
            return list(map(view.key_cache.__getitem__, uniq.tolist())), inverse.reshape(-1)
        bits = 63 // len(cols)
        if all(c.size == 0 or (c.min() >= 0 and int(c.max()) < (1 << bits)) for c in cols):
            # composite of small non-negative ints: pack the parts into one int64, dedupe in numpy
            packed = np.zeros(len(cols[0]), dtype=np.int64)
            for c in cols:
                packed = (packed << bits) | c.astype(np.int64)
            uniq, inverse = np.unique(packed, return_inverse=True)
            return list(map(view.key_cache.__getitem__, uniq.tolist())), inverse.reshape(-1)
        # composite, any int64s: each row's parts as one bytes object, deduped by a dict
        stacked = np.empty((len(cols[0]), len(cols)), dtype=np.int64)
        for i, c in enumerate(cols):
            stacked[:, i] = c
        raws: list[Any] = stacked.view(np.dtype((np.void, 8 * len(cols)))).ravel().tolist()
        index: dict[bytes, int] = {}
        inverse = np.fromiter(
            (index.setdefault(r, len(index)) for r in raws), dtype=np.intp, count=len(raws)
        )
        return list(map(view.key_cache.__getitem__, index)), inverse
    all_keys = layout.entity_keys(cols)  # string keys (or ints given as Python objects)
    seen: dict[bytes, int] = {}
    inverse = np.fromiter(
        (seen.setdefault(k, len(seen)) for k in all_keys), dtype=np.intp, count=len(all_keys)
    )
    return (list(map(_bulk, seen)) if view.resp else list(seen)), inverse


def _plain_redis(client: Any) -> bool:
    """A non-cluster redis-py client whose connections speak RESP2/3 with bytes replies."""
    import redis

    return (
        type(client) is redis.Redis
        and not client.connection_pool.connection_kwargs.get("decode_responses", False)
    )


class _KeyCache(dict):
    """Entity -> Redis key (or its RESP bulk-string form) for all-integer-key views. Bounded.

    Indexed by the id (one join key) or by the row's packed int64 parts (composite keys).
    Ranking requests repeat entities a lot; a dict hit is ~5x cheaper than formatting a key."""

    def __init__(self, layout: PackedViewLayout, resp: bool, limit: int = 200_000):
        super().__init__()
        self.limit = limit
        prefix = layout.key_prefix
        m = len(layout.join_keys)
        if m == 1:

            def build(entity_id: int) -> bytes:
                return prefix + b"%d" % entity_id

        else:  # int: parts packed `63 // m` bits each (first part highest); bytes: m x <i8
            unpack = struct.Struct(f"<{m}q").unpack
            template = layout.key_template
            bits = 63 // m
            mask = (1 << bits) - 1
            shifts = [bits * (m - 1 - i) for i in range(m)]

            def build(entity: int | bytes) -> bytes:
                if isinstance(entity, int):
                    return template % tuple((entity >> sh) & mask for sh in shifts)
                return template % unpack(entity)

        self.build = (lambda e: _bulk(build(e))) if resp else build

    def __missing__(self, entity: int | bytes) -> bytes:
        if len(self) >= self.limit:
            self.clear()
        item = self[entity] = self.build(entity)
        return item


def _bulk(key: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(key), key)


class _RespMget:
    """MGET over a redis-py connection with the command pre-encoded (cached key segments).

    redis-py would re-encode ~2,000 keys per call (~0.5 ms); the segments are cached per id, so
    the command is one join. Same pool, same connection handling as `Redis.execute_command`,
    without its retry loop: a failed read raises and the caller's policy decides."""

    def __init__(self, client: Any):
        self._client = client
        self._pool = client.connection_pool

    def __call__(self, segments: list[bytes]) -> list[bytes | None]:
        own = self._client.connection  # set for single_connection_client=True
        conn = own or self._pool.get_connection()
        try:
            conn.send_packed_command(
                [b"*%d\r\n$4\r\nMGET\r\n" % (len(segments) + 1), b"".join(segments)]
            )
            return conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        finally:
            if own is None:
                self._pool.release(conn)


def _drop_malformed(part: Sequence[bytes | None], layout: PackedViewLayout) -> tuple[np.ndarray, bytes]:
    """Treat records of the wrong size as absent (fail open), and say so once per call."""
    size = layout.record_size
    ok = [r is not None and len(r) == size for r in part]
    bad = sum(r is not None for r in part) - sum(ok)
    logger.warning("%s: %d packed records of unexpected size treated as missing", layout.view, bad)
    return np.array(ok, dtype=bool), b"".join(r for r, good in zip(part, ok) if good and r)
