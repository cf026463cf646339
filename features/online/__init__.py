"""Fast online features: a packed-vector view of Feast's Redis online store (docs/online_reader.md).

`materialize_packed` / `PackedViewWriter` write it from what Feast materialized; `PackedFeatureReader`
reads a FeatureService for ~1,000 entity rows with one MGET into a float32 block.
"""

from features.online.layout import DEFAULT_NAMESPACE, LAYOUT_VERSION, TS_MISSING, PackedViewLayout
from features.online.packer import PackedViewWriter, PackStats, materialize_packed, redis_client_for
from features.online.reader import OnlineFeatureBlock, PackedFeatureReader

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
