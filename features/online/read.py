"""Read a Feast FeatureService from the packed view: one MGET per request, a float32 block back.

    reader = PackedFeatureReader.from_feature_store(store, "ranking_v1", client=redis_client)
    block = reader.read({"viewer_id": [...], "post_id": [...], "author_id": [...]})
    block.values      # (n_rows, n_features) float32, the service's declared column order
    block.missing     # (n_rows, n_features) bool: True exactly where Feast returns None

Parity with `FeatureStore.get_online_features(service, rows).to_dict()` (tests/integration/
test_online_reader.py): a value Feast returns is returned as float32; where Feast returns None
(unknown entity, null value, or a key Feast's `key_ttl_seconds` expired) `missing` is set and the
value is the feature's default (NaN unless configured). Like Feast's Redis store, the feature
view TTL is *not* enforced at read time unless `enforce_ttl` asks for it (for every view, or for
the views it names).

`shared_ms` (off unless given) keeps the records of the views named in `shared_views` (those whose
entities many requests share: a post's, an author's) decoded, by entity, for up to that long, in
this process, and asks Redis only for the ones not kept (features.online.shared_rows): a ranking
request's posts and authors are more than half the same as those of the requests just before it,
and their views hold ~90 % of its keys. A record so read is at most `shared_ms` old.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from feast import FeatureService, FeatureStore

from features.online.keys import distinct_entities, unique_entities
from features.online.layout import DEFAULT_NAMESPACE, TS_MISSING, PackedViewLayout
from features.online.resolve import ViewRead, resolve_service
from features.online.shared_rows import KeptRows, Rows, SharedRows
from features.online.transport import ClusterMget, RespMget, cluster_bytes, plain_redis

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


class PackedFeatureReader:
    """Reads one FeatureService from the packed-vector view in Redis.

    Build it once (it resolves the service against the Feast registry) and call `read` per request.
    `client` is a redis-py `Redis` (or `RedisCluster`: same results, each key read from the node
    owning its slot, `transport.ClusterMget`) with `decode_responses=False`.
    """

    def __init__(
        self,
        client: Any,
        views: Sequence[ViewRead],
        feature_names: Sequence[str],
        defaults: np.ndarray,
        enforce_ttl: bool | Collection[str] = False,
        shared_views: Collection[str] = (),
        shared_ms: float = 0.0,
    ):
        self._client = client
        self._views = tuple(views)
        self.feature_names = tuple(feature_names)
        self.view_names = tuple(v.name for v in self._views)
        self.entity_columns = tuple(dict.fromkeys(c for v in self._views for c in v.request_columns))
        self._defaults = np.asarray(defaults, dtype=np.float32).reshape(1, -1)
        self._all_nan_defaults = bool(np.isnan(self._defaults).all())
        self.enforce_ttl = enforce_ttl
        # per view: is its TTL enforced (True: every view's; names: those views')
        enforced = {v.name for v in self._views} if enforce_ttl is True else set(enforce_ttl or ())
        self._ttl = tuple(bool(v.ttl_us) and v.name in enforced for v in self._views)
        unknown = set(shared_views) - set(self.view_names)
        if unknown:
            raise KeyError(f"shared_views names views the service does not read: {sorted(unknown)}")
        widths = {v.name: len(v.feature_index) for v in self._views if v.name in shared_views} if shared_ms > 0 else {}
        self.shared_rows = SharedRows(widths, shared_ms) if widths else None  # None: off
        if plain_redis(client):
            self._mget = RespMget(client)
            self._views = tuple(replace(v, resp=True) for v in self._views)
        elif cluster_bytes(client):  # Redis Cluster: each key to the node owning its slot
            self._mget = ClusterMget(client)
        else:  # anything else: its own mget (a cluster's that decodes replies: split by slot)
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
        enforce_ttl: bool | Collection[str] = False,
        namespace: str = DEFAULT_NAMESPACE,
        skip_on_demand: bool = False,
        extra_views: Sequence[str] = (),
        shared_views: Collection[str] = (),
        shared_ms: float = 0.0,
    ) -> PackedFeatureReader:
        """Resolve `feature_service` in the registry; `client` defaults to Feast's own Redis config.

        `defaults`: the value for missing cells, one for all features or a mapping by output
        feature name (unlisted features: NaN). `full_feature_names` names columns
        `<view>__<feature>` exactly as Feast does. `skip_on_demand`: leave the service's on-demand
        views out (the caller computes them, e.g. features.online.ranking) instead of raising.
        `extra_views`: feature views the service does not list, read whole after its columns in
        the same MGET (e.g. the sources of an on-demand view the caller computes).
        `shared_views`, `shared_ms`: records of those views kept for up to that long (module doc).
        """
        if client is None:
            from features.online.packer import redis_client_for

            client = redis_client_for(store)
        views, names, default_row = resolve_service(
            store,
            feature_service,
            full_feature_names=full_feature_names,
            defaults=defaults,
            namespace=namespace,
            skip_on_demand=skip_on_demand,
            extra_views=extra_views,
        )
        return cls(client, views, names, default_row, enforce_ttl=enforce_ttl, shared_views=shared_views,
                   shared_ms=shared_ms)

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
        entities never raise. `now` (epoch seconds) only matters where a TTL is enforced: a row
        older than its view's TTL before `now` is missing (flagged in `view_stale`).
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

        # 1. per view: its distinct entities (the same author behind many posts is fetched once),
        #    the rows kept from recent requests (shared views), the keys of the rest
        kept = self.shared_rows.current() if self.shared_rows is not None else {}
        plans: list[tuple[int, int, np.ndarray, KeptRows | None, np.ndarray | None, list[Any]]] = []
        keys: list[bytes] = []
        distinct: dict[tuple[str, ...], Any] = {}  # join-key columns -> their distinct entities
        for view in self._views:
            cols = [np.asarray(columns[c]) for c in view.request_columns]
            entities = None
            if view.key_cache is not None:
                if view.request_columns not in distinct:
                    distinct[view.request_columns] = unique_entities(cols)
                entities = distinct[view.request_columns]
            uniq, inverse, keys_of = distinct_entities(cols, view.layout, view.key_cache, view.resp, entities)
            rows, pos, asked = kept.get(view.name), None, uniq
            if rows is not None:
                pos = rows.positions(uniq)
                asked = [uniq[i] for i in np.flatnonzero(pos < 0).tolist()]
            view_keys = keys_of(asked) if asked else []
            plans.append((len(keys), len(view_keys), inverse, rows, pos, asked))
            keys.extend(view_keys)

        # 2. one round trip
        replies = self._mget(keys) if keys else []

        # 3. decode per view (shared views: keep what was read, then gather from all kept), scatter
        #    back to rows
        now_us = int((time.time() if now is None else now) * 1_000_000)
        for j, (view, enforce, plan) in enumerate(zip(self._views, self._ttl, plans)):
            offset, count, inverse, rows, pos, asked = plan
            read = _decode(view, replies[offset : offset + count])
            if rows is None:
                source, at = read, inverse
            else:
                if count:
                    pos[pos < 0] = rows.add(asked, read)
                source, at = rows.rows, pos[inverse]  # rows.rows read after every position was written
            row_ts, row_found, row_missing = source.ts[at], source.found[at], source.missing[at]
            if enforce:
                row_stale = row_found & (row_ts < now_us - view.ttl_us)
                row_missing[row_stale] = True
                stale[:, j] = row_stale
            values[:, view.out] = source.values[at]
            missing[:, view.out] = row_missing
            found[:, j] = row_found
            ts[:, j] = row_ts

        # 4. defaults (stored nulls are NaN already, so all-NaN defaults need no pass)
        if not self._all_nan_defaults or any(self._ttl):
            np.copyto(values, self._defaults, where=missing)
        return OnlineFeatureBlock(self.feature_names, values, missing, self.view_names, found, stale, ts)


def _decode(view: ViewRead, part: Sequence[bytes | None]) -> Rows:
    """One view's replies (None where no record) as rows of its selected features."""
    layout, count = view.layout, len(part)
    hit = np.fromiter(map(bool, part), dtype=bool, count=count)
    raw = b"".join(filter(None, part))
    if len(raw) != int(hit.sum()) * layout.record_size:
        hit, raw = _drop_malformed(part, layout)
    rec = layout.decode(raw)
    out = Rows.empty(count, len(view.feature_index))
    out.found[:] = hit
    if len(rec):
        out.values[hit] = rec["values"][:, view.feature_index]
        out.missing[hit] = layout.null_mask(rec)[:, view.feature_index]
        out.ts[hit] = rec["ts"]
    return out


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


def _drop_malformed(part: Sequence[bytes | None], layout: PackedViewLayout) -> tuple[np.ndarray, bytes]:
    """Treat records of the wrong size as absent (fail open), and say so once per call."""
    size = layout.record_size
    ok = [bool(r) and len(r) == size for r in part]
    bad = sum(bool(r) for r in part) - sum(ok)
    logger.warning("%s: %d packed records of unexpected size treated as missing", layout.view, bad)
    return np.array(ok, dtype=bool), b"".join(r for r, good in zip(part, ok) if good and r)
