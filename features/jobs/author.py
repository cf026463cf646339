"""Author features: reach, posting rate and how their posts are received."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data import columns as c
from data.days import day_end
from features.celebrity import CelebrityRule
from features.jobs.inputs import (
    age_days,
    follow_edges,
    latest_users,
    read_upto,
    require_partitions,
)
from features.jobs.relationship import counted_type
from features.tables import AUTHOR, EVENT_TIMESTAMP

WINDOW_DAYS = 28
RATE_PRIOR_IMPRESSIONS = 100.0  # smoothing: an author with few impressions leans on the global rate
RATED = ("like", "comment", "share", "save", "negative")
INPUTS = ("users", "posts", "follows", "engagements", "impressions")


def celebrity_threshold(rows: DataFrame, rule: CelebrityRule) -> int:
    """The shared rule (features.celebrity) on the users' follower counts, sent to the driver as a
    histogram (count -> accounts)."""
    hist = rows.where(F.col("follower_count") > 0).groupBy("follower_count").count().collect()
    return rule.threshold_from_histogram([r["follower_count"] for r in hist], [r["count"] for r in hist])


def impressions_with_posts(spark: SparkSession, lake_dir: Path, day: str, lookback_days: int) -> DataFrame:
    """Impressions of the window joined with their post's author and media type."""
    posts = read_upto(spark, lake_dir, "posts", day).where(F.col(c.DELETED_AT).isNull())
    posts = posts.select(c.POST_ID, c.AUTHOR_ID, c.MEDIA_TYPE).dropDuplicates([c.POST_ID])
    imps = read_upto(spark, lake_dir, "impressions", day, lookback_days).withColumn(
        "age", age_days(c.TS, day)
    ).where(F.col("age") < lookback_days)
    return imps.join(F.broadcast(posts), on=c.POST_ID, how="inner")


def compute(spark: SparkSession, lake_dir: Path, day: str, rule: CelebrityRule | None = None) -> DataFrame:
    require_partitions(lake_dir, day, INPUTS)
    rule = rule or CelebrityRule.load()
    users = latest_users(spark, lake_dir, day)
    edges = follow_edges(spark, lake_dir, day)
    followers = edges.groupBy(F.col(c.FOLLOWEE_ID).alias(c.AUTHOR_ID)).agg(
        F.count("*").alias("follower_count")
    )
    followees = edges.groupBy(F.col(c.FOLLOWER_ID).alias(c.AUTHOR_ID)).agg(
        F.count("*").alias("followee_count")
    )
    posts = read_upto(spark, lake_dir, "posts", day).where(F.col(c.DELETED_AT).isNull())
    posting = (
        posts.dropDuplicates([c.POST_ID])
        .where(age_days(c.CREATED_AT, day) < WINDOW_DAYS)
        .groupBy(c.AUTHOR_ID)
        .agg((F.count("*") / WINDOW_DAYS).alias("posts_per_day_28d"))
    )
    impressions = impressions_with_posts(spark, lake_dir, day, WINDOW_DAYS).groupBy(c.AUTHOR_ID).agg(
        F.count("*").alias("impressions_28d")
    )
    eng = read_upto(spark, lake_dir, "engagements", day, WINDOW_DAYS).where(
        age_days(c.TS, day) < WINDOW_DAYS
    ).withColumn("kind", counted_type())
    received = eng.groupBy(c.AUTHOR_ID).agg(
        *[F.sum(F.when(F.col("kind") == k, 1).otherwise(0)).alias(f"_{k}") for k in RATED],
        F.avg(F.when(F.col(c.TYPE) == "dwell", F.col(c.VALUE))).alias("mean_dwell_ms"),
    )
    rows = (
        users.select(F.col(c.USER_ID).alias(c.AUTHOR_ID), c.IS_PRIVATE, c.IS_VERIFIED)
        .join(followers, on=c.AUTHOR_ID, how="left")
        .join(followees, on=c.AUTHOR_ID, how="left")
        .join(posting, on=c.AUTHOR_ID, how="left")
        .join(impressions, on=c.AUTHOR_ID, how="left")
        .join(received, on=c.AUTHOR_ID, how="left")
        .fillna(0, subset=["follower_count", "followee_count", "posts_per_day_28d", "impressions_28d",
                           *[f"_{k}" for k in RATED]])
        # Computed once, kept on the executors: the global rates, the celebrity threshold and the
        # snapshot's write all read it (one row per account), and the joins above are the job's
        # cost (a third of a small day's feature time when each action recomputed them). Spark
        # frees the blocks when the frame is garbage collected.
        .localCheckpoint(eager=True)
    )
    # Global rates, the prior every author's rate is smoothed toward.
    totals = rows.agg(F.sum("impressions_28d").alias("n"), *[F.sum(f"_{k}").alias(k) for k in RATED]).first()
    n = max(totals["n"] or 0, 1)
    rates = {
        f"{k}_rate": (F.col(f"_{k}") + RATE_PRIOR_IMPRESSIONS * (totals[k] or 0) / n)
        / (F.col("impressions_28d") + RATE_PRIOR_IMPRESSIONS)
        for k in RATED
    }
    derived = {
        **rates,
        "mean_dwell_ms": F.coalesce(F.col("mean_dwell_ms"), F.lit(0.0)),
        "is_celebrity": (F.col("follower_count") >= celebrity_threshold(rows, rule)).cast("float"),
        "is_private": F.col(c.IS_PRIVATE).cast("float"),
        "is_verified": F.col(c.IS_VERIFIED).cast("float"),
    }
    return rows.select(
        c.AUTHOR_ID,
        *[derived.get(name, F.col(name)).cast("float").alias(name) for name in AUTHOR.features],
        F.lit(day_end(day)).alias(EVENT_TIMESTAMP),
    )
