"""What the feature jobs read from the lake, cut at the end of the snapshot day.

Point-in-time rule: the snapshot for day D sees only rows that landed on or before D *and* are
dated before the end of D. Late rows of D that land on D+1 are picked up by D+1's snapshot.

An export may have no engagement, impression or block log at all (features.optional_logs): such a
log, absent from the whole lake, reads as empty. A log the lake holds on other days but not on D is
still a missing input (D's ingest has not run): an error naming it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from data import columns as c
from data import lake
from data.contracts import CONTRACTS
from data.spark import lake_schema, read_lake
from features.optional_logs import absent

SECONDS_PER_DAY = 86_400.0


class MissingInputError(Exception):
    """A feature partition whose lake inputs are not there: the message names them."""


def day_end(day: str) -> datetime:
    """The snapshot time of day D: the end of D, UTC."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    return start + timedelta(days=1)


def require_partitions(lake_dir: Path, day: str, logs: tuple[str, ...]) -> None:
    missing = [
        str(lake.partition_dir(lake_dir, log, day))
        for log in logs
        if day not in lake.partition_days(lake_dir, log) and not absent(lake_dir, log)
    ]
    if missing:
        raise MissingInputError(f"feature snapshot {day} needs lake partitions that are missing: "
                                + ", ".join(missing))


def read_upto(spark: SparkSession, lake_dir: Path, log: str, day: str, lookback_days: int | None = None) -> DataFrame:
    """Rows of `log` landed on days (day - lookback_days, day], dated before the end of `day`."""
    days = [d for d in lake.partition_days(lake_dir, log) if d <= day]
    if lookback_days is not None:
        first = (date.fromisoformat(day) - timedelta(days=lookback_days)).isoformat()
        days = [d for d in days if d > first]
    frame = read_lake(spark, lake_dir, log, days)
    if frame is None and absent(lake_dir, log):
        frame = spark.createDataFrame([], lake_schema(CONTRACTS[log]))
    if frame is None:
        raise MissingInputError(f"no lake partitions of {log} up to {day}")
    time_column = CONTRACTS[log].time_column
    return frame.where(F.col(time_column) < F.lit(day_end(day)))


def age_days(ts_column: str, day: str):
    """Age in days of a timestamp at the snapshot time."""
    end_s = day_end(day).timestamp()
    return (F.lit(end_s) - F.unix_timestamp(F.col(ts_column))) / SECONDS_PER_DAY


def latest_users(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    """One row per user as of the end of `day`: its latest update."""
    users = read_upto(spark, lake_dir, "users", day)
    latest = Window.partitionBy(c.USER_ID).orderBy(F.col(c.UPDATED_AT).desc())
    return users.withColumn("_r", F.row_number().over(latest)).where("_r = 1").drop("_r")


def live_posts(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    """Posts created before the end of `day` and not deleted by then (one row per post)."""
    rows = read_upto(spark, lake_dir, "posts", day)
    deleted = rows.where(F.col(c.DELETED_AT).isNotNull() & (F.col(c.DELETED_AT) < F.lit(day_end(day))))
    created = rows.where(F.col(c.DELETED_AT).isNull()).dropDuplicates([c.POST_ID])
    return created.join(deleted.select(c.POST_ID).distinct(), on=c.POST_ID, how="left_anti")


def follow_edges(spark: SparkSession, lake_dir: Path, day: str) -> DataFrame:
    """Active follow edges at the end of `day`: follower_id, followee_id, since (timestamp).

    An edge is active when the latest follow/unfollow is a follow and, for a private followee,
    an approve came after that follow (Instagram's follow request).
    """
    events = read_upto(spark, lake_dir, "follows", day)
    pair = [c.FOLLOWER_ID, c.FOLLOWEE_ID]
    toggles = events.where(F.col(c.ACTION).isin("follow", "unfollow"))
    last = Window.partitionBy(*pair).orderBy(F.col(c.TS).desc())
    latest = (
        toggles.withColumn("_r", F.row_number().over(last))
        .where((F.col("_r") == 1) & (F.col(c.ACTION) == "follow"))
        .select(*pair, F.col(c.TS).alias("since"))
    )
    approvals = events.where(F.col(c.ACTION) == "approve").groupBy(*pair).agg(
        F.max(c.TS).alias("approved_at")
    )
    private = latest_users(spark, lake_dir, day).select(
        F.col(c.USER_ID).alias(c.FOLLOWEE_ID), c.IS_PRIVATE
    )
    is_private = F.coalesce(F.col(c.IS_PRIVATE), F.lit(False))
    return (
        latest.join(approvals, on=pair, how="left")
        .join(private, on=c.FOLLOWEE_ID, how="left")
        .where(~is_private | (F.col("approved_at") >= F.col("since")))
        .select(*pair, F.when(is_private, F.col("approved_at")).otherwise(F.col("since")).alias("since"))
    )
