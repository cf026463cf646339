"""Post features for posts of the last 7 days: engagement so far, smoothed toward the author's
rates, velocity, media type, hashtags and age at the snapshot."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data import columns as c
from data.days import day_end
from features.jobs.author import RATED
from features.jobs.inputs import age_days, live_posts, read_upto, require_partitions
from features.jobs.relationship import counted_type
from features.storage import read_feature_partition
from features.tables import AUTHOR, EVENT_TIMESTAMP, POST

MAX_AGE_DAYS = 7  # older posts are no longer candidates
RATE_PRIOR_IMPRESSIONS = 20.0  # a new post's rates start at its author's
VELOCITY_RECENT_H, VELOCITY_EARLIER_H = 6.0, 18.0
INPUTS = ("posts", "engagements", "impressions")


def compute(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    require_partitions(lake_dir, day, INPUTS)
    authors = read_feature_partition(spark, lake_dir, AUTHOR, day).select(
        c.AUTHOR_ID, *[F.col(f"{k}_rate").alias(f"_author_{k}_rate") for k in RATED]
    )
    posts = live_posts(spark, lake_dir, day).withColumn("age_h", age_days(c.CREATED_AT, day) * 24)
    posts = posts.where(F.col("age_h") < MAX_AGE_DAYS * 24)
    lookback = MAX_AGE_DAYS + 1
    impressions = read_upto(spark, lake_dir, "impressions", day, lookback).groupBy(c.POST_ID).agg(
        F.count("*").alias("impressions")
    )
    eng = (
        read_upto(spark, lake_dir, "engagements", day, lookback)
        .withColumn("kind", counted_type())
        .withColumn("age_h", age_days(c.TS, day) * 24)
    )
    positive = F.col("kind").isin("like", "comment", "share", "save")
    counts = eng.groupBy(c.POST_ID).agg(
        *[F.sum(F.when(F.col("kind") == k, 1).otherwise(0)).alias(f"{k}s") for k in RATED],
        F.sum(F.when(positive & (F.col("age_h") < VELOCITY_RECENT_H), 1).otherwise(0)).alias("_recent"),
        F.sum(
            F.when(positive & (F.col("age_h") >= VELOCITY_RECENT_H)
                   & (F.col("age_h") < VELOCITY_RECENT_H + VELOCITY_EARLIER_H), 1).otherwise(0)
        ).alias("_earlier"),
    )
    rows = (
        posts.join(impressions, on=c.POST_ID, how="left")
        .join(counts, on=c.POST_ID, how="left")
        .join(authors, on=c.AUTHOR_ID, how="left")
        .fillna(0, subset=["impressions", *[f"{k}s" for k in RATED], "_recent", "_earlier"])
    )
    per_hour_ratio = VELOCITY_EARLIER_H / VELOCITY_RECENT_H
    derived = {
        **{
            f"{k}_rate": (F.col(f"{k}s") + RATE_PRIOR_IMPRESSIONS * F.coalesce(F.col(f"_author_{k}_rate"), F.lit(0.0)))
            / (F.col("impressions") + RATE_PRIOR_IMPRESSIONS)
            for k in RATED
        },
        # Positive engagements per hour, last 6 h vs the 18 h before (+1 smoothing both sides).
        "velocity": (F.col("_recent") * per_hour_ratio + 1) / (F.col("_earlier") + 1),
        "is_video": (F.col(c.MEDIA_TYPE) == "video").cast("float"),
        "is_carousel": (F.col(c.MEDIA_TYPE) == "carousel").cast("float"),
        "hashtag_count": F.coalesce(F.size(c.HASHTAGS), F.lit(0)),
        "age_hours": F.col("age_h"),
        "created_at_s": F.unix_timestamp(c.CREATED_AT),
    }
    return rows.select(
        c.POST_ID,
        *[derived.get(name, F.col(name)).cast("float").alias(name) for name in POST.features],
        F.lit(day_end(day)).alias(EVENT_TIMESTAMP),
    )
