"""Hashtag buckets in Spark, shared by the `post_tags` and `viewer_tags` jobs: the rule of
features/tags.py (crc32 of the lowercased tag, mod TAG_BUCKETS), which Spark's `crc32` computes alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from data import columns as c
from features.tables import TAG_BUCKETS

BUCKET = "_bucket"
NORM = "_l2_norm"


def spark_tag_bucket(tag: Column) -> Column:
    return (F.crc32(F.lower(tag)) % TAG_BUCKETS).cast("int")


def sql_sum(terms: Iterable[str]) -> str:
    """A SQL sum of `terms` from a double 0.0, left to right (the order Python's `sum` adds them)."""
    return " + ".join(["0.0D", *terms])


def l2_normalised(frame: DataFrame, key: str, columns: list[str]) -> DataFrame:
    """`columns` divided by the row's L2 norm (rows of norm 0 stay all zeros).

    The norm is a column of its own, computed once per row: written inline, its 64-term sum was
    copied into each of the 2 x 64 places that use it, and the generated code outgrew the JVM's
    64 KB method limit (Spark then compiles for seconds, fails, and interprets the plan); that made
    `post_tags` and `viewer_tags` the slowest feature assets of a tiny `make run`. Same values.
    The 64-column expressions are SQL text (one call into Spark each), not Column objects: those
    cost several Python-to-JVM calls per operator, seconds of driver time per snapshot."""
    with_norm = frame.selectExpr(key, *[f"`{name}`" for name in columns],
                                 f"sqrt({sql_sum(f'`{name}` * `{name}`' for name in columns)}) AS {NORM}")
    return with_norm.selectExpr(
        key, *[f"CASE WHEN {NORM} > 0 THEN `{name}` / {NORM} ELSE 0.0D END AS `{name}`" for name in columns])


def cast_float(names: Iterable[str]) -> list[str]:
    """SQL select expressions: each column as float under its own name."""
    return [f"CAST(`{name}` AS FLOAT) AS `{name}`" for name in names]


def post_tag_vectors(posts: DataFrame, names: list[str]) -> DataFrame:
    """post_id + one double column per bucket (named by `names`): the post's L2-normalised bucket
    counts. One row per post of `posts`, all zeros when it has no hashtags."""
    tags = posts.select(c.POST_ID, F.explode_outer(c.HASHTAGS).alias("_tag")).withColumn(
        BUCKET, spark_tag_bucket(F.col("_tag"))
    )
    counts = tags.groupBy(c.POST_ID).agg(
        *[F.expr(f"sum(CAST({BUCKET} = {k} AS DOUBLE)) AS `{name}`") for k, name in enumerate(names)]
    ).fillna(0.0)  # a post without tags: one null tag row, null sums
    return l2_normalised(counts, c.POST_ID, names)
