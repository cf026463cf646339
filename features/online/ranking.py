"""Hydrate ranking candidates with a ranking feature service (`feed_ranker_v1` or `_v2`): what
Feast's get_online_features returns for the service (parity-tested), as one float32 matrix in the
service's column order.

One rule is added to Feast's online read, so that serving sees what training sees: a real-time
view's row (written at each of the entity's engagements, as of it) older than the view's ttl
before the request is missing, as Feast's point-in-time retrieval leaves it out of training sets
(Feast's own online read would return it however old).

Stored views come from the packed Redis view (one MGET); the service's on-demand view
(`request_features`) is computed here with the same formulas in NumPy, because running Feast's
pandas UDF per request would cost more than the whole read. Its hashtag inputs (`viewer_tags`,
`post_tags`) are not in the service: they are read in the same MGET and dropped after use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from feast import FeatureStore

from data import columns as c
from features.feature_repo.definitions import SERVICE_NAME
from features.online.read import OnlineFeatureBlock, PackedFeatureReader
from features.services import REALTIME_VIEWS
from features.tables import POST_TAGS, POSTED_AT_S, VIEWER_TAGS

ON_DEMAND_VIEW = "request_features"
AGE_AT_REQUEST = f"{ON_DEMAND_VIEW}__post_age_hours_at_request"
IN_NETWORK_FEATURE = f"{ON_DEMAND_VIEW}__in_network"  # 1.0 when the viewer follows the author
INTEREST_MATCH = f"{ON_DEMAND_VIEW}__interest_match"
ON_DEMAND = (AGE_AT_REQUEST, IN_NETWORK_FEATURE, INTEREST_MATCH)  # the view's schema order
CREATED_AT = f"{POST_TAGS.name}__{POSTED_AT_S}"  # known from publication on (see POST_TAGS)
IS_FOLLOWING = "viewer_author__is_following"
TAG_VIEWS = (VIEWER_TAGS, POST_TAGS)
TTL_VIEWS = REALTIME_VIEWS  # rows written at each engagement, as of it: they age between engagements


@dataclass(frozen=True)
class RankingFeatures:
    names: list[str]
    values: np.ndarray  # float32 (n, f); missing cells are NaN (LightGBM's own missing value)
    missing: np.ndarray  # bool (n, f): True where Feast would return None


class RankingFeatureReader:
    """`shared_ms` > 0: the records of views not keyed by the viewer (a post's, an author's: other
    requests read them too) are kept for up to that long and not asked of Redis again
    (features.online.shared_rows)."""

    def __init__(self, store: FeatureStore, service: str = SERVICE_NAME, client: Any = None,
                 shared_ms: float = 0.0):
        self._stored = PackedFeatureReader.from_feature_store(
            store, service, client=client, full_feature_names=True, skip_on_demand=True,
            extra_views=[t.name for t in TAG_VIEWS], enforce_ttl=TTL_VIEWS,
            shared_views=_not_per_viewer(store, service),
            shared_ms=shared_ms,
        )
        self.service = service
        stored = list(self._stored.feature_names)
        tags = [f"{t.name}__{f}" for t in TAG_VIEWS for f in t.features]
        self._n_service = len(stored) - len(tags)
        assert stored[self._n_service:] == tags, "tag views are read after the service's views"
        self._created = stored.index(CREATED_AT)
        self._following = stored.index(IS_FOLLOWING)
        self._viewer_tags = [stored.index(f"{VIEWER_TAGS.name}__{f}") for f in VIEWER_TAGS.features]
        self._post_tags = [stored.index(f"{POST_TAGS.name}__{f}") for f in POST_TAGS.features
                           if f.startswith("post_tag_")]
        self.feature_names = [*stored[: self._n_service], *ON_DEMAND]

    def read_stored(self, viewer_ids, author_ids, post_ids, request_ts_s: float | None = None) -> OnlineFeatureBlock:
        """The stored views (the service's, then the tag views), with per-view found flags and
        event timestamps (freshness); real-time rows older than their ttl before `request_ts_s`
        (default: now) are missing."""
        return self._stored.read({
            c.VIEWER_ID: np.asarray(viewer_ids, dtype=np.int64),
            c.AUTHOR_ID: np.asarray(author_ids, dtype=np.int64),
            c.POST_ID: np.asarray(post_ids, dtype=np.int64),
        }, now=request_ts_s)

    def read(self, viewer_ids, author_ids, post_ids, request_ts_s: float) -> RankingFeatures:
        block = self.read_stored(viewer_ids, author_ids, post_ids, request_ts_s)
        n, m = block.values.shape[0], self._n_service
        created = block.values[:, self._created].astype(np.float64)
        age_h = np.maximum((float(request_ts_s) - created) / 3600.0, 0.0)  # NaN stays NaN
        following = block.values[:, self._following]
        in_network = np.where(block.missing[:, self._following], 0.0, following)
        values = np.empty((n, len(self.feature_names)), dtype=np.float32)
        values[:, :m] = block.values[:, :m]
        values[:, m] = age_h
        values[:, m + 1] = in_network
        values[:, m + 2] = self._interest_match(block)
        missing = np.zeros(values.shape, dtype=bool)
        missing[:, :m] = block.missing[:, :m]
        missing[:, m] = np.isnan(age_h)
        return RankingFeatures(self.feature_names, values, missing)

    def _interest_match(self, block: OnlineFeatureBlock) -> np.ndarray:
        """Feast's UDF exactly: missing cells count as 0, float64 products summed bucket by
        bucket in order (same order, same bits); 0.0 for an unknown viewer or post."""
        viewer = np.where(block.missing[:, self._viewer_tags], 0.0, block.values[:, self._viewer_tags])
        post = np.where(block.missing[:, self._post_tags], 0.0, block.values[:, self._post_tags])
        viewer, post = viewer.astype(np.float64), post.astype(np.float64)
        match = np.zeros(len(viewer), dtype=np.float64)
        for k in range(viewer.shape[1]):
            match += viewer[:, k] * post[:, k]
        return match


def _not_per_viewer(store: FeatureStore, service: str) -> list[str]:
    """The views the reader reads (the service's and the tag views) whose join keys leave the viewer
    out: their rows serve every viewer's requests."""
    keys = {v.name: v.join_keys for v in store.list_feature_views()}
    read = [p.name for p in store.get_feature_service(service).feature_view_projections] + [t.name for t in TAG_VIEWS]
    return [name for name in read if name in keys and c.VIEWER_ID not in keys[name]]
