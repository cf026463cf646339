"""Relationship strength of a viewer towards an author (RealGraph-style), one snapshot per day.

Pairs: every active follow edge and every (viewer, author) with an engagement in the last 28 days.
"""

from __future__ import annotations

import math
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data import columns as c
from data.days import day_end
from features.jobs.inputs import age_days, follow_edges, read_upto, require_partitions
from features.tables import (
    COUNTED_TYPES,
    DECAY_HALF_LIFE_DAYS,
    DECAY_WEIGHTS,
    EVENT_TIMESTAMP,
    NO_INTERACTION_DAYS,
    RELATIONSHIP,
    WINDOWS_DAYS,
)

LOOKBACK_DAYS = max(WINDOWS_DAYS)
INPUTS = ("users", "follows", "engagements")


def counted_type(type_column: str = c.TYPE):
    """Engagement type as counted in features: hide and report are one negative signal."""
    return F.when(F.col(type_column).isin("hide", "report"), F.lit("negative")).otherwise(F.col(type_column))


def _decay_weight():
    weight = F.lit(0.0)
    for kind, w in DECAY_WEIGHTS.items():
        weight = F.when(F.col(c.TYPE) == kind, F.lit(w)).otherwise(weight)
    return weight


def compute(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    require_partitions(lake_dir, day, INPUTS)
    pair = [c.VIEWER_ID, c.AUTHOR_ID]
    eng = (
        read_upto(spark, lake_dir, "engagements", day, LOOKBACK_DAYS)
        .withColumn("age", age_days(c.TS, day))
        .where(F.col("age") < LOOKBACK_DAYS)
        .where(F.col(c.VIEWER_ID) != F.col(c.AUTHOR_ID))
        .withColumn("kind", counted_type())
    )
    counts = [
        F.sum(F.when((F.col("kind") == kind) & (F.col("age") < w), 1).otherwise(0))
        .cast("float")
        .alias(f"{kind}_{w}d")
        for kind in COUNTED_TYPES
        for w in WINDOWS_DAYS
    ]
    decay = F.exp(-F.col("age") * math.log(2) / DECAY_HALF_LIFE_DAYS)
    positive = ~F.col("kind").isin("negative")
    engaged = eng.groupBy(*pair).agg(
        *counts,
        F.sum(_decay_weight() * decay).cast("float").alias("engagement_score_decayed"),
        F.min("age").cast("float").alias("days_since_last_interaction"),
        F.sum(F.when(positive, 1).otherwise(0)).alias("_positive"),
    )
    viewer_total = eng.where(positive).groupBy(c.VIEWER_ID).agg(F.count("*").alias("_viewer_total"))
    # Reciprocity: the author engaging with the viewer's own posts.
    reverse = eng.where(positive).groupBy(
        F.col(c.AUTHOR_ID).alias(c.VIEWER_ID), F.col(c.VIEWER_ID).alias(c.AUTHOR_ID)
    ).agg(F.count("*").cast("float").alias("author_engaged_viewer_28d"))

    edges = follow_edges(spark, lake_dir, day).select(
        F.col(c.FOLLOWER_ID).alias(c.VIEWER_ID), F.col(c.FOLLOWEE_ID).alias(c.AUTHOR_ID), "since"
    )
    back = edges.select(
        F.col(c.AUTHOR_ID).alias(c.VIEWER_ID), F.col(c.VIEWER_ID).alias(c.AUTHOR_ID)
    ).withColumn("is_followed_by", F.lit(1.0).cast("float"))
    follows = edges.withColumn("is_following", F.lit(1.0).cast("float")).withColumn(
        "follow_age_days", age_days("since", day).cast("float")
    )

    rows = (
        engaged.join(follows.drop("since"), on=pair, how="full_outer")
        .join(back, on=pair, how="left")
        .join(reverse, on=pair, how="left")
        .join(viewer_total, on=c.VIEWER_ID, how="left")
    )
    zero = F.lit(0.0).cast("float")
    filled = {name: F.coalesce(F.col(name), zero) for name in RELATIONSHIP.features}
    filled["days_since_last_interaction"] = F.coalesce(
        F.col("days_since_last_interaction"), F.lit(NO_INTERACTION_DAYS).cast("float")
    )
    filled["is_mutual"] = (filled["is_following"] * filled["is_followed_by"]).cast("float")
    filled["engagement_share"] = F.coalesce(
        (F.col("_positive") / F.col("_viewer_total")).cast("float"), zero
    )
    return rows.select(
        *pair,
        *[filled[name].cast("float").alias(name) for name in RELATIONSHIP.features],
        F.lit(day_end(day)).alias(EVENT_TIMESTAMP),
    )
