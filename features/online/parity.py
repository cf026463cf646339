"""Parity between Loupe's online paths and Feast's own `get_online_features` — used by the tests
and by the Dagster checks that guard every materialization."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from feast import FeatureStore

from data import columns as c
from features.feature_repo.definitions import REQUEST_TS
from features.online.ranking import TTL_VIEWS, RankingFeatureReader
from features.tables import FeatureTable


@dataclass
class Parity:
    cells: int = 0
    mismatched: list[str] = field(default_factory=list)  # "feature@row: ours vs feast"

    @property
    def ok(self) -> bool:
        return not self.mismatched


def _same(ours: float, theirs) -> bool:
    if theirs is None or (isinstance(theirs, float) and np.isnan(theirs)):
        return bool(np.isnan(ours))
    return bool(np.float32(theirs) == np.float32(ours))


def reader_vs_feast(store: FeatureStore, reader: RankingFeatureReader, viewer_ids, author_ids,
                    post_ids, request_ts_s: int) -> Parity:
    """The fast reader's matrix against Feast's get_online_features for the same candidates (its
    service), where a real-time view's value older than the view's ttl counts as None (the reader's
    one rule beyond Feast's, features/online/ranking.py)."""
    ours = reader.read(viewer_ids, author_ids, post_ids, request_ts_s)
    rows = [
        {c.VIEWER_ID: int(v), c.AUTHOR_ID: int(a), c.POST_ID: int(p), REQUEST_TS: int(request_ts_s)}
        for v, a, p in zip(viewer_ids, author_ids, post_ids)
    ]
    theirs = store.get_online_features(
        features=store.get_feature_service(reader.service), entity_rows=rows, full_feature_names=True
    ).to_dict(include_event_timestamps=True)
    ttl_s = {v: store.get_feature_view(v).ttl.total_seconds() for v in TTL_VIEWS}
    parity = Parity()
    for j, name in enumerate(ours.names):
        view = name.split("__", 1)[0]
        for i, value in enumerate(theirs[name]):
            if view in ttl_s and value is not None and theirs[f"{name}__ts"][i] < request_ts_s - ttl_s[view]:
                value = None
            parity.cells += 1
            if not _same(ours.values[i, j], value) or ours.missing[i, j] != (value is None):
                parity.mismatched.append(f"{name}@{i}: {ours.values[i, j]!r} vs {value!r}")
    return parity


def online_vs_offline(store: FeatureStore, table: FeatureTable, snapshot: pd.DataFrame) -> Parity:
    """Feast's online values for some entities of a snapshot equal the snapshot's own values."""
    rows = snapshot[list(table.entities)].astype("int64").to_dict("records")
    online = store.get_online_features(
        features=[f"{table.name}:{f}" for f in table.features], entity_rows=rows
    ).to_dict()
    parity = Parity()
    for name in table.features:
        for i, value in enumerate(online[name]):
            parity.cells += 1
            if not _same(snapshot[name].iloc[i], value):
                parity.mismatched.append(f"{name}@{i}: offline {snapshot[name].iloc[i]!r} vs online {value!r}")
    return parity
