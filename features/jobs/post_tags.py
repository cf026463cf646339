"""Post content: the `post` table's posts (live, last 7 days), hashtag bucket counts L2-normalised,
and the creation time; each row stamped with the post's creation time (content is fixed then)."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from data import columns as c
from features.jobs.inputs import age_days, live_posts, require_partitions
from features.jobs.post import MAX_AGE_DAYS
from features.jobs.tags import cast_float, post_tag_vectors
from features.tables import EVENT_TIMESTAMP, POST_TAGS, POSTED_AT_S

INPUTS = ("posts",)


def compute(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    require_partitions(lake_dir, day, INPUTS)
    posts = live_posts(spark, lake_dir, day).where(age_days(c.CREATED_AT, day) < MAX_AGE_DAYS)
    tags = [f for f in POST_TAGS.features if f.startswith("post_tag_")]
    vectors = post_tag_vectors(posts, tags).join(posts.select(c.POST_ID, c.CREATED_AT), c.POST_ID)
    return vectors.selectExpr(
        c.POST_ID,
        *cast_float(tags),
        f"CAST(unix_timestamp(`{c.CREATED_AT}`) AS FLOAT) AS {POSTED_AT_S}",
        f"`{c.CREATED_AT}` AS `{EVENT_TIMESTAMP}`",
    )
