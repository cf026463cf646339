"""Viewer features: activity, engagement by media type, Home vs Explore usage, account age."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data import columns as c
from data.days import day_end
from features.jobs.author import impressions_with_posts
from features.jobs.inputs import age_days, latest_users, read_upto, require_partitions
from features.tables import EVENT_TIMESTAMP, VIEWER

WINDOW_DAYS = 7
POSITIVE = ("like", "comment", "share", "save")
INPUTS = ("users", "posts", "engagements", "impressions")


def compute(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    require_partitions(lake_dir, day, INPUTS)
    users = latest_users(spark, lake_dir, day).select(
        F.col(c.USER_ID).alias(c.VIEWER_ID), age_days(c.CREATED_AT, day).alias("account_age_days")
    )
    imps = impressions_with_posts(spark, lake_dir, day, WINDOW_DAYS)
    seen = imps.groupBy(c.VIEWER_ID).agg(
        F.countDistinct(c.REQUEST_ID).alias("requests_7d"),
        F.count("*").alias("impressions_7d"),
        F.avg((F.col(c.SURFACE) == "explore").cast("double")).alias("explore_share"),
        *[F.sum((F.col(c.MEDIA_TYPE) == m).cast("int")).alias(f"_imp_{m}") for m in c.MEDIA_TYPES],
    )
    media = read_upto(spark, lake_dir, "posts", day).select(c.POST_ID, c.MEDIA_TYPE).dropDuplicates([c.POST_ID])
    eng = (
        read_upto(spark, lake_dir, "engagements", day, WINDOW_DAYS)
        .where((age_days(c.TS, day) < WINDOW_DAYS) & F.col(c.TYPE).isin(*POSITIVE))
        .join(F.broadcast(media), on=c.POST_ID, how="left")
    )
    engaged = eng.groupBy(c.VIEWER_ID).agg(
        F.count("*").alias("engagements_7d"),
        *[F.sum((F.col(c.MEDIA_TYPE) == m).cast("int")).alias(f"_eng_{m}") for m in c.MEDIA_TYPES],
    )
    rows = users.join(seen, on=c.VIEWER_ID, how="left").join(engaged, on=c.VIEWER_ID, how="left")
    zero = F.lit(0.0)

    def rate(num: str, den: str):
        return F.when(F.col(den) > 0, F.coalesce(F.col(num), zero) / F.col(den)).otherwise(zero)

    derived = {
        "requests_7d": F.coalesce(F.col("requests_7d"), zero),
        "impressions_7d": F.coalesce(F.col("impressions_7d"), zero),
        "engagements_7d": F.coalesce(F.col("engagements_7d"), zero),
        "engagement_rate_7d": rate("engagements_7d", "impressions_7d"),
        **{f"engagement_rate_{m}": rate(f"_eng_{m}", f"_imp_{m}") for m in c.MEDIA_TYPES},
        "explore_share": F.coalesce(F.col("explore_share"), zero),
        "account_age_days": F.greatest(F.col("account_age_days"), zero),
    }
    return rows.select(
        c.VIEWER_ID,
        *[derived[name].cast("float").alias(name) for name in VIEWER.features],
        F.lit(day_end(day)).alias(EVENT_TIMESTAMP),
    )
