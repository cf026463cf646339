"""Hashtag buckets: a tag's bucket is crc32(lowercased UTF-8 tag) mod TAG_BUCKETS.

Spark's `crc32` and Python's `zlib.crc32` agree (both the unsigned CRC-32), so a bucket is the same
in every snapshot (features/jobs/tags.py, in Spark) and in any Python process (the stream feature
worker's `post_tags` rows), with no vocabulary to fit or keep in step.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable

from features.tables import TAG_BUCKETS


def tag_bucket(tag: str) -> int:
    return zlib.crc32(tag.lower().encode("utf-8")) % TAG_BUCKETS


def tag_vector(tags: Iterable[str]) -> list[float]:
    """Bucket counts, L2-normalised (all zeros without tags): what `post_tags` holds per post. The
    tags as the post carries them: repeats count, as in the Spark job's explode."""
    counts = [0.0] * TAG_BUCKETS
    for tag in tags:
        counts[tag_bucket(tag)] += 1.0
    norm = math.sqrt(sum(x * x for x in counts))
    return [x / norm for x in counts] if norm else counts
