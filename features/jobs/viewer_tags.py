"""Viewer hashtag interests: for each engagement of the last 28 days, the engaged post's bucket
vector times the engagement type's weight (DECAY_WEIGHTS, as in the relationship score; hide and
report pull it down), summed per viewer, negatives clipped at 0, L2-normalised. Viewers with no
positive mass get no row (Feast returns missing for them)."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data import columns as c
from data.days import day_end
from features.jobs.inputs import age_days, read_upto, require_partitions
from features.jobs.relationship import _decay_weight as type_weight
from features.jobs.tags import cast_float, l2_normalised, post_tag_vectors, sql_sum
from features.tables import EVENT_TIMESTAMP, VIEWER_TAGS

WINDOW_DAYS = 28
INPUTS = ("posts", "engagements")


def compute(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    require_partitions(lake_dir, day, INPUTS)
    names = list(VIEWER_TAGS.features)
    # Every post's creation row: engaged posts may be older than 7 days, or deleted since.
    posts = read_upto(spark, lake_dir, "posts", day).where(F.col(c.DELETED_AT).isNull())
    vectors = post_tag_vectors(posts.dropDuplicates([c.POST_ID]), names)
    weights = (
        read_upto(spark, lake_dir, "engagements", day, WINDOW_DAYS)
        .where(age_days(c.TS, day) < WINDOW_DAYS)
        .groupBy(c.VIEWER_ID, c.POST_ID)
        .agg(F.sum(type_weight()).alias("_w"))
    )
    profile = weights.join(vectors, on=c.POST_ID, how="inner").groupBy(c.VIEWER_ID).agg(
        *[F.expr(f"greatest(sum(_w * `{name}`), 0.0D) AS `{name}`") for name in names]
    )
    positive = F.expr(f"{sql_sum(f'`{name}`' for name in names)} > 0")
    rows = l2_normalised(profile.where(positive), c.VIEWER_ID, names)
    return rows.selectExpr(c.VIEWER_ID, *cast_float(names)).withColumn(EVENT_TIMESTAMP, F.lit(day_end(day)))
