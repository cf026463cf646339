"""Fast online features: a packed-vector view of Feast's Redis online store (docs/online_reader.md).

`write_window` writes Feast's online store and the packed view in one pass (Feast's bytes);
`materialize_packed` / `PackedViewWriter` write it from what Feast materialized (the reference, and
the path for views the bulk writer leaves to Feast); `PackedFeatureReader` reads a FeatureService
for ~1,000 entity rows with one MGET into a float32 block.

Modules: `layout` (the key and record format), `bulk_write` and `packer` (the write paths); the read path is
`resolve` (service -> per-view read plans, once), `read` (the per-request hot path), `keys`
(entity -> Redis key, deduped and cached), `transport` (the pre-encoded MGET; per node on a Redis
Cluster); `ranking` serves `feed_ranker_v1` on top of it and `parity` checks it against Feast.
"""

from features.online.bulk_write import write_window
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
    "write_window",
]
