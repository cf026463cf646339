"""Validate one landing day of one log against its contract, in Spark.

Every line read ends in exactly one of three states, so totals reconcile:
    landed       typed, valid, first copy of its key        -> lake/<log>/dt=<day>/
    quarantined  first failed rule, as `reason`             -> lake/quarantine/<log>/dt=<day>/
    duplicate    valid, but its key landed already (this day or an earlier one) -> dropped, counted

Rules, in the order a line is judged (a line gets the first reason that applies):
    (before Spark, in landing.py: bad_encoding, line_too_long)
    malformed_json, missing_required:<col>, bad_type:<col>, bad_enum:<col>,
    ts_in_future, ts_too_old, unknown_reference:<col>

Id columns take a JSON integer or string, mapped to int64 by `data.ids.spark_id` (a text no id can
be is bad_type); engagement types and impression sources come from the log vocabulary given.
Time rules are relative to the landing day only: no calendar date is special.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import reduce

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from data import columns as c
from data.contracts import ID_ENTITIES, REFERENCED_IDS, LogContract
from data.ids import HASHED_BASE, spark_id
from data.spark import spark_type
from data.vocabulary import Vocabulary, load_vocabulary

LANDED, QUARANTINED, DUPLICATE = "landed", "quarantined", "duplicate"
STATUS = "_status"
_CORRUPT = "_corrupt_record"
_ORDER = "_order"
BAD_ENUM_VALUE = "_bad_enum_value"  # the offending value of a bad_enum row (to report), else null
MAPPED = "_mapped"  # some id of the row is in the hashed range: the id map has work to do


def _raw_id(column: str) -> str:
    """The hidden column keeping an id's exported text, for the id map."""
    return f"_raw_{column}"
# Clocks drift: an event up to this far past the end of its landing day is still believed.
FUTURE_SKEW = timedelta(hours=1)


def _raw_schema(contract: LogContract) -> T.StructType:
    # Every field as a string: a wrong type then fails one column (bad_type:<col>) instead of
    # spoiling the whole line, and the raw text stays available for the reason.
    fields = [T.StructField(name, T.StringType()) for name in contract.column_names]
    return T.StructType(fields + [T.StructField(_CORRUPT, T.StringType())])


# The boolean spellings docs/log_contracts.md accepts, as the raw JSON text: true/false, 0/1, and
# "true"/"false". Spark's own cast also takes "yes", "y", "t", " TRUE ", ...: each is bad_type here.
BOOLEAN_TEXT = {"true": True, "1": True, "false": False, "0": False}


def _typed(raw: Column, arrow_type: pa.DataType) -> Column:
    if pa.types.is_list(arrow_type):
        return F.from_json(raw, T.ArrayType(spark_type(arrow_type.value_type)))
    if pa.types.is_boolean(arrow_type):
        return F.when(raw.isin(*BOOLEAN_TEXT), raw.isin(*[t for t, b in BOOLEAN_TEXT.items() if b]))
    return raw.try_cast(spark_type(arrow_type))


def _day_bounds(day: str) -> tuple[datetime, datetime]:
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def parse_lines(
    lines: DataFrame, contract: LogContract, day: str, vocabulary: Vocabulary | None = None
) -> DataFrame:
    """Landing lines (`value`, `source_file`) -> typed contract columns + `reason` (null if valid).

    `vocabulary` lists the engagement types and impression sources (None: the shipped one; the
    Dagster assets pass the workspace's). Referential integrity is judged separately
    (`check_references`), since it needs the lake.
    """
    enums = contract.enum_values(vocabulary or load_vocabulary())
    parsed = lines.withColumn(_ORDER, F.monotonically_increasing_id()).withColumn(
        "_j", F.from_json("value", _raw_schema(contract), {"columnNameOfCorruptRecord": _CORRUPT})
    )
    rules: list[Column] = [
        F.when(
            (F.trim("value") == "") | F.col(f"_j.{_CORRUPT}").isNotNull(), F.lit("malformed_json")
        )
    ]
    rules += [
        F.when(F.col(f"_j.{name}").isNull(), F.lit(f"missing_required:{name}"))
        for name in contract.required
    ]
    raw = {f.name: F.col(f"_j.{f.name}") for f in contract.schema}
    # Ids take a JSON integer or string (data.ids); every other column is cast to its type.
    typed = {
        f.name: (spark_id(raw[f.name]) if f.name in ID_ENTITIES else _typed(raw[f.name], f.type))
        for f in contract.schema
    }
    rules += [
        F.when(F.col(f"_j.{name}").isNotNull() & expr.isNull(), F.lit(f"bad_type:{name}"))
        for name, expr in typed.items()
    ]
    rules += [
        F.when(~typed[name].isin(*allowed), F.lit(f"bad_enum:{name}"))
        for name, allowed in enums.items()
    ]
    start, end = _day_bounds(day)
    ts = typed[contract.time_column]
    rules.append(F.when(ts > F.lit(end + FUTURE_SKEW), F.lit("ts_in_future")))
    if contract.max_age_days is not None:
        oldest = start - timedelta(days=contract.max_age_days)
        rules.append(F.when(ts < F.lit(oldest), F.lit("ts_too_old")))

    reason = F.coalesce(*rules)
    bad_value = F.coalesce(
        *[F.when(reason == f"bad_enum:{name}", typed[name]) for name in enums],
        F.lit(None).cast("string"),  # a log without enums
    )
    return parsed.select(
        *[expr.alias(name) for name, expr in typed.items()],
        reason.alias(c.REASON),
        F.col("value").alias(c.RAW_LINE),
        c.SOURCE_FILE,
        _ORDER,
        bad_value.alias(BAD_ENUM_VALUE),
        F.coalesce(
            reduce(Column.__or__, [typed[name] >= F.lit(HASHED_BASE) for name in contract.id_columns]),
            F.lit(False),
        ).alias(MAPPED),
        *[raw[name].alias(_raw_id(name)) for name in contract.id_columns],
    )


def check_references(rows: DataFrame, contract: LogContract, known: dict[str, DataFrame]) -> DataFrame:
    """Set `reason` = unknown_reference:<col> on valid rows whose id is not known yet.

    `known` maps a referenced log ("users", "posts") to a one-column frame of its ids.
    """
    for column, log in contract.references.items():
        ids = known[log].select(F.col(REFERENCED_IDS[log]).alias(column)).distinct()
        flag = f"_known_{column}"
        rows = rows.join(F.broadcast(ids.withColumn(flag, F.lit(True))), on=column, how="left")
        rows = rows.withColumn(
            c.REASON,
            F.coalesce(
                F.col(c.REASON),
                F.when(F.col(flag).isNull(), F.lit(f"unknown_reference:{column}")),
            ),
        ).drop(flag)
    return rows


def assign_status(rows: DataFrame, contract: LogContract, seen_keys: DataFrame | None) -> DataFrame:
    """Mark each row landed / quarantined / duplicate.

    A valid row is a duplicate when an earlier valid row of this day has its key, or when its key
    landed on an earlier day (`seen_keys`: the key columns of earlier lake partitions).
    """
    key = list(contract.key)
    valid = F.col(c.REASON).isNull()
    copies = Window.partitionBy(*key, valid).orderBy(c.SOURCE_FILE, _ORDER)
    rows = rows.withColumn("_copy", F.when(valid, F.row_number().over(copies)))
    if seen_keys is not None:
        # Null-safe: a key may hold nulls (a post's creation row has no deleted_at).
        seen = seen_keys.select(*[F.col(k).alias(f"_seen_{k}") for k in key]).distinct()
        match = [rows[k].eqNullSafe(seen[f"_seen_{k}"]) for k in key]
        # No broadcast hint: an event log's earlier keys are millions of rows; let AQE choose.
        rows = rows.join(seen.withColumn("_seen", F.lit(True)), on=match, how="left")
        rows = rows.drop(*[f"_seen_{k}" for k in key])
    else:
        rows = rows.withColumn("_seen", F.lit(None).cast("boolean"))
    status = (
        F.when(~valid, F.lit(QUARANTINED))
        .when((F.col("_copy") > 1) | F.col("_seen").isNotNull(), F.lit(DUPLICATE))
        .otherwise(F.lit(LANDED))
    )
    return rows.withColumn(STATUS, status).drop("_copy", "_seen")


def landed_rows(rows: DataFrame, contract: LogContract) -> DataFrame:
    return rows.where(F.col(STATUS) == LANDED).select(
        *[F.col(f.name).cast(spark_type(f.type)) for f in contract.schema]
    )


def id_map_rows(rows: DataFrame, contract: LogContract) -> DataFrame:
    """The id map of one partition (`data.id_map`): each distinct id in the hashed range among the
    valid rows (landed or duplicate: a colliding twin dropped as a duplicate must be seen) with the
    text it came from, per id column."""
    valid = rows.where(F.col(STATUS).isin(LANDED, DUPLICATE))
    parts = [
        valid.where(F.col(name) >= F.lit(HASHED_BASE)).select(
            F.lit(ID_ENTITIES[name]).alias(c.ENTITY),
            F.lit(contract.name).alias(c.LOG_TYPE),
            F.lit(name).alias(c.ID_COLUMN),
            F.col(_raw_id(name)).alias(c.ORIGINAL_ID),
            F.col(name).cast("long").alias(c.ID),
        )
        for name in contract.id_columns
    ]
    return reduce(DataFrame.unionByName, parts).distinct()


def quarantined_rows(rows: DataFrame) -> DataFrame:
    return rows.where(F.col(STATUS) == QUARANTINED).select(c.SOURCE_FILE, c.RAW_LINE, c.REASON)
