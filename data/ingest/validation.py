"""Validate landing days of one log against its contract, in Spark: each line carries its landing
day (`dt`), and is judged as if its day were ingested alone, after every earlier day.

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

from collections.abc import Sequence
from datetime import timedelta
from functools import reduce

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from data import columns as c
from data.contracts import ID_ENTITIES, REFERENCED_IDS, LogContract
from data.days import day_end, day_start
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


def _per_day(days: Sequence[str], value) -> Column:
    """`value(day)` of each row's landing day (a literal per day: the rules stay day-relative)."""
    return F.create_map(*[x for day in days for x in (F.lit(day), F.lit(value(day)))])[F.col(c.DT)]


def parse_lines(
    lines: DataFrame, contract: LogContract, days: str | Sequence[str], vocabulary: Vocabulary | None = None
) -> DataFrame:
    """Landing lines (`value`, `source_file`, `dt`: the landing day) -> typed contract columns,
    `dt` + `reason` (null if valid). `days` are the landing days the lines hold; lines without a
    `dt` column are all of the one day `days` names.

    `vocabulary` lists the engagement types and impression sources (None: the shipped one; the
    Dagster assets pass the workspace's). Referential integrity is judged separately
    (`check_references`), since it needs the lake.
    """
    if isinstance(days, str):
        days = [days]
        if c.DT not in lines.columns:
            lines = lines.withColumn(c.DT, F.lit(days[0]))
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
    ts = typed[contract.time_column]
    rules.append(F.when(ts > _per_day(days, lambda d: day_end(d) + FUTURE_SKEW), F.lit("ts_in_future")))
    if contract.max_age_days is not None:
        max_age = timedelta(days=contract.max_age_days)
        rules.append(F.when(ts < _per_day(days, lambda d: day_start(d) - max_age), F.lit("ts_too_old")))

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
        c.DT,
        _ORDER,
        bad_value.alias(BAD_ENUM_VALUE),
        F.coalesce(
            reduce(Column.__or__, [typed[name] >= F.lit(HASHED_BASE) for name in contract.id_columns]),
            F.lit(False),
        ).alias(MAPPED),
        *[raw[name].alias(_raw_id(name)) for name in contract.id_columns],
    )


KNOWN_SINCE = "_known_since"  # the first landing day an id is known on (`check_references`)


def check_references(rows: DataFrame, contract: LogContract, known: dict[str, DataFrame]) -> DataFrame:
    """Set `reason` = unknown_reference:<col> on valid rows whose id is not known on their day.

    `known` maps a referenced log ("users", "posts") to its ids, each with the first landing day
    it is known on (`KNOWN_SINCE`): a row may reference what landed on its own day or before.
    """
    for column, log in contract.references.items():
        since = f"_known_{column}"
        ids = known[log].select(F.col(REFERENCED_IDS[log]).alias(column), F.col(KNOWN_SINCE).alias(since))
        rows = rows.join(F.broadcast(ids), on=column, how="left")
        rows = rows.withColumn(
            c.REASON,
            F.coalesce(
                F.col(c.REASON),
                F.when(F.col(since).isNull() | (F.col(since) > F.col(c.DT)), F.lit(f"unknown_reference:{column}")),
            ),
        ).drop(since)
    return rows


def assign_status(rows: DataFrame, contract: LogContract, earlier: DataFrame | None, days: Sequence[str]) -> DataFrame:
    """Mark each row landed / quarantined / duplicate, as ingesting its days one by one in order would.

    A valid row is a duplicate when an earlier valid row of its day has its key, or when its key
    landed on one of the earlier days it looks back on: every earlier day for a snapshot log, the
    `max_age_days` + 1 days before it for an event log. The days landed in this same pass count as
    they are decided, so a key repeated beyond an event log's look-back lands again, as it would day
    by day. `earlier`: the key columns + `dt` of the lake partitions this pass looks back on and does
    not rewrite; `days`: every landing day of the log (the lake's and the pass's), sorted, which
    gives "the days before" their order.
    """
    key = list(contract.key)
    valid = F.col(c.REASON).isNull()
    copies = Window.partitionBy(*key, valid, c.DT).orderBy(c.SOURCE_FILE, _ORDER)
    index = F.create_map(*[x for i, day in enumerate(days) for x in (F.lit(day), F.lit(i))])
    rows = rows.withColumn("_copy", F.when(valid, F.row_number().over(copies)))
    rows = rows.withColumn("_i", index[F.col(c.DT)]).withColumn("_lake", F.lit(False))
    if earlier is not None:
        lake_keys = earlier.select(*key, index[F.col(c.DT)].alias("_i"), F.lit(True).alias("_lake")).distinct()
        rows = rows.unionByName(lake_keys, allowMissingColumns=True)
    # Per key, the days it is offered on (a valid first copy, or a lake day's landed row), in day
    # order; walking them decides which pass days land it: a day within the look-back of the last
    # landing is a duplicate, any other lands (a lake day is landed already, whatever the walk).
    offered = F.when(F.col("_lake") | (F.col("_copy") == 1),
                     F.struct(F.col("_i").alias("i"), F.col("_lake").alias("lake")))
    walk = F.array_sort(F.collect_set(offered).over(Window.partitionBy(*key)))
    look_back = None if contract.max_age_days is None else contract.max_age_days + 1

    def step(acc: Column, day: Column) -> Column:
        seen = acc["last"].isNotNull()
        if look_back is not None:
            seen = seen & (day["i"] - acc["last"] <= look_back)
        lands = F.struct(day["i"].alias("last"), F.concat(acc["landed"], F.array(day["i"])).alias("landed"))
        return (F.when(day["lake"], F.struct(day["i"].alias("last"), acc["landed"].alias("landed")))
                .when(seen, acc).otherwise(lands))

    start = F.struct(F.lit(None).cast("int").alias("last"), F.array().cast("array<int>").alias("landed"))
    rows = rows.withColumn("_landed", F.aggregate(walk, start, step, lambda acc: acc["landed"]))
    status = (
        F.when(~valid, F.lit(QUARANTINED))
        .when((F.col("_copy") > 1) | ~F.array_contains("_landed", F.col("_i")), F.lit(DUPLICATE))
        .otherwise(F.lit(LANDED))
    )
    return rows.where(~F.col("_lake")).withColumn(STATUS, status).drop("_copy", "_i", "_lake", "_landed")


def landed_rows(rows: DataFrame, contract: LogContract) -> DataFrame:
    """The landed rows in the contract's schema, with their landing day (`dt`)."""
    return rows.where(F.col(STATUS) == LANDED).select(
        *[F.col(f.name).cast(spark_type(f.type)) for f in contract.schema], c.DT
    )


def id_map_rows(rows: DataFrame, contract: LogContract) -> DataFrame:
    """The id map (`data.id_map`), per landing day (`dt`): each distinct id in the hashed range among the
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
            c.DT,
        )
        for name in contract.id_columns
    ]
    return reduce(DataFrame.unionByName, parts).distinct()


def quarantined_rows(rows: DataFrame) -> DataFrame:
    return rows.where(F.col(STATUS) == QUARANTINED).select(c.SOURCE_FILE, c.RAW_LINE, c.REASON, c.DT)
