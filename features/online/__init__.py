"""Fast online features: a packed-vector view of Feast's Redis online store (docs/online_reader.md).

`materialize_packed` / `PackedViewWriter` write it from what Feast materialized; `PackedFeatureReader`
reads a FeatureService for ~1,000 entity rows with one MGET into a float32 block.

Modules: `layout` (the key and record format), `packer` (the write path); the read path is
`resolve` (service -> per-view read plans, once), `read` (the per-request hot path), `keys`
(entity -> Redis key, deduped and cached), `transport` (the pre-encoded MGET); `ranking` serves
`feed_ranker_v1` on top of it and `parity` checks it against Feast.
"""

from features.online.layout import DEFAULT_NAMESPACE, LAYOUT_VERSION, TS_MISSING, PackedViewLayout
from features.online.packer import PackedViewWriter, PackStats, materialize_packed, redis_client_for
from features.online.read import OnlineFeatureBlock, PackedFeatureReader

__all__ = [
    "DEFAULT_NAMESPACE",
    "LAYOUT_VERSION",
    "TS_MISSING",
    "OnlineFeatureBlock",
    "PackStats",
    "PackedFeatureReader",
    "PackedViewLayout",
    "PackedViewWriter",
    "materialize_packed",
    "redis_client_for",
]
