"""Resolve a Feast FeatureService against the registry into one read plan per packed view.

`PackedFeatureReader.from_feature_store` (features/online/read.py) calls this once; the request
path only walks the resulting `ViewRead`s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from feast import FeatureService, FeatureStore

from features.online.keys import KeyCache
from features.online.layout import DEFAULT_NAMESPACE, PackedViewLayout


@dataclass(frozen=True)
class ViewRead:
    """One projection of the service: which packed view, which request columns, which slice."""

    name: str  # projection.name_to_use()
    layout: PackedViewLayout
    request_columns: tuple[str, ...]  # aligned with layout.join_keys (join_key_map applied)
    feature_index: np.ndarray  # positions in layout.features of the selected features
    out: slice  # columns of the output block
    ttl_us: int  # 0 = no TTL
    resp: bool = False  # keys travel pre-encoded (see transport.RespMget)
    key_cache: KeyCache | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        all_int = "String" not in self.layout.join_key_dtypes
        cache = KeyCache(self.layout, self.resp) if all_int else None
        object.__setattr__(self, "key_cache", cache)


def resolve_service(
    store: FeatureStore,
    feature_service: str | FeatureService,
    *,
    full_feature_names: bool = False,
    defaults: float | Mapping[str, float] = math.nan,
    namespace: str = DEFAULT_NAMESPACE,
    skip_on_demand: bool = False,
    extra_views: Sequence[str] = (),
) -> tuple[list[ViewRead], list[str], np.ndarray]:
    """(read plan per view, output feature names, float32 default row) for `feature_service`.

    The arguments mean what they mean for `PackedFeatureReader.from_feature_store`.
    """
    name = feature_service if isinstance(feature_service, str) else feature_service.name
    service = store.get_feature_service(name)
    on_demand_names = {v.name for v in store.list_on_demand_feature_views()} if skip_on_demand else set()
    views: list[ViewRead] = []
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
            ViewRead(
                name=view_name,
                layout=layout,
                request_columns=tuple(projection.join_key_map.get(k, k) for k in layout.join_keys),
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
    return views, names, default_row
