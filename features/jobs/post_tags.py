"""Post hashtag vectors: the `post` table's posts (live, last 7 days), bucket counts L2-normalised."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data import columns as c
from features.jobs.inputs import age_days, day_end, live_posts, require_partitions
from features.jobs.post import MAX_AGE_DAYS
from features.jobs.tags import post_tag_vectors
from features.tables import EVENT_TIMESTAMP, POST_TAGS

INPUTS = ("posts",)


def compute(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    require_partitions(lake_dir, day, INPUTS)
    posts = live_posts(spark, lake_dir, day).where(age_days(c.CREATED_AT, day) < MAX_AGE_DAYS)
    vectors = post_tag_vectors(posts, list(POST_TAGS.features))
    return vectors.select(
        c.POST_ID,
        *[F.col(name).cast("float").alias(name) for name in POST_TAGS.features],
        F.lit(day_end(day)).alias(EVENT_TIMESTAMP),
    )
