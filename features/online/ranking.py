"""Hydrate ranking candidates with `feed_ranker_v1`: exactly what Feast's get_online_features
returns for the service (parity-tested), as one float32 matrix in the service's column order.

Stored views come from the packed Redis view (one MGET); the service's on-demand view
(`request_features`) is computed here with the same formulas in NumPy, because running Feast's
pandas UDF per request would cost more than the whole read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from feast import FeatureStore

from data import columns as c
from features.feature_repo.definitions import SERVICE_NAME
from features.online.reader import OnlineFeatureBlock, PackedFeatureReader

ON_DEMAND_VIEW = "request_features"
AGE_AT_REQUEST = f"{ON_DEMAND_VIEW}__post_age_hours_at_request"
IN_NETWORK = f"{ON_DEMAND_VIEW}__in_network"
CREATED_AT = "post__created_at_s"
IS_FOLLOWING = "viewer_author__is_following"


@dataclass(frozen=True)
class RankingFeatures:
    names: list[str]
    values: np.ndarray  # float32 (n, f); missing cells are NaN (LightGBM's own missing value)
    missing: np.ndarray  # bool (n, f): True where Feast would return None


class RankingFeatureReader:
    def __init__(self, store: FeatureStore, service: str = SERVICE_NAME, client: Any = None):
        self._stored = PackedFeatureReader.from_feature_store(
            store, service, client=client, full_feature_names=True, skip_on_demand=True
        )
        stored = list(self._stored.feature_names)
        self._created = stored.index(CREATED_AT)
        self._following = stored.index(IS_FOLLOWING)
        self.feature_names = [*stored, AGE_AT_REQUEST, IN_NETWORK]

    def read_stored(self, viewer_ids, author_ids, post_ids) -> OnlineFeatureBlock:
        """The stored views only, with per-view found flags and event timestamps (freshness)."""
        return self._stored.read({
            c.VIEWER_ID: np.asarray(viewer_ids, dtype=np.int64),
            c.AUTHOR_ID: np.asarray(author_ids, dtype=np.int64),
            c.POST_ID: np.asarray(post_ids, dtype=np.int64),
        })

    def read(self, viewer_ids, author_ids, post_ids, request_ts_s: float) -> RankingFeatures:
        block = self.read_stored(viewer_ids, author_ids, post_ids)
        n = block.values.shape[0]
        created = block.values[:, self._created].astype(np.float64)
        age_h = np.maximum((float(request_ts_s) - created) / 3600.0, 0.0)  # NaN stays NaN
        following = block.values[:, self._following]
        in_network = np.where(block.missing[:, self._following], 0.0, following)
        values = np.empty((n, len(self.feature_names)), dtype=np.float32)
        values[:, :-2] = block.values
        values[:, -2] = age_h
        values[:, -1] = in_network
        missing = np.zeros(values.shape, dtype=bool)
        missing[:, :-2] = block.missing
        missing[:, -2] = np.isnan(age_h)
        return RankingFeatures(self.feature_names, values, missing)
