"""Validate landing days of one log against its contract, in Spark: each line carries its landing
day (`dt`), and is judged as if its day were ingested alone, after every earlier day.

Every line read ends in exactly one of three states, so totals reconcile:
    landed       typed, valid, first copy of its key        -> lake/<log>/dt=<day>/
    quarantined  first failed rule, as `reason`             -> lake/quarantine/<log>/dt=<day>/
    duplicate    valid, but its key landed already (this day or an earlier one) -> dropped, counted

Rules, in the order a line is judged (a line gets the first reason that applies):
    (before Spark, in landing.py: bad_encoding, line_too_long)
    the line's own rules (data/ingest/line_rules.py, shared with the service and the stream's
    consumers): malformed_json, missing_required:<col>, bad_type:<col>, bad_enum:<col>,
    ts_in_future, ts_too_old; run on each Arrow batch in a Python worker (mapInArrow)
    unknown_reference:<col> (here: it needs the lake)

Time rules are relative to the landing day only: no calendar date is special.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from data import columns as c
from data.contracts import ID_ENTITIES, REFERENCED_IDS, LogContract
from data.ids import HASHED_BASE
from data.ingest import line_rules
from data.spark import spark_type
from data.vocabulary import Vocabulary, load_vocabulary

LANDED, QUARANTINED, DUPLICATE = "landed", "quarantined", "duplicate"
STATUS = "_status"
_ORDER = "_order"
_LINE = "_line"
BAD_ENUM_VALUE = line_rules.BAD_ENUM_VALUE
_raw_id = line_rules.raw_id
MAPPED = "_mapped"  # some id of the row is in the hashed range: the id map has work to do


SOURCE = "_source"  # a landing line's file and day, as an index into `LandingLines.sources`


@dataclass(frozen=True)
class LandingLines:
    """Landing lines as Spark reads them: `frame` holds each line (`value`) and its `_source`, the
    index of its (landing file, landing day) in `sources`. The line rules' Python workers get the
    line and that index, not the file's name and day (~0.4 s a million lines less through Arrow)."""

    frame: DataFrame
    sources: Sequence[tuple[str, str]]

    @classmethod
    def of_file(cls, frame: DataFrame, source_file: str, day: str) -> LandingLines:
        """Lines (`value`) all of one landing file and day."""
        return cls(frame.select("value", F.lit(0).alias(SOURCE)), [(source_file, day)])


def _checked(contract: LogContract, vocabulary: Vocabulary, source_days: list[str]):
    """The mapInArrow function: line_rules over each Arrow batch of landing lines, in a Python worker."""

    def check(batches):
        rules = line_rules.LineRules(contract, vocabulary)
        for batch in batches:
            days = [source_days[i] for i in batch.column(SOURCE).to_pylist()]
            checked = line_rules.check_batch(rules, batch.column(_LINE).to_pylist(), days)
            yield pa.RecordBatch.from_arrays([*batch.columns, *checked.columns],
                                             names=[*batch.schema.names, *checked.schema.names])

    return check


def parse_lines(lines: LandingLines, contract: LogContract, vocabulary: Vocabulary | None = None) -> DataFrame:
    """Landing lines -> typed contract columns, `source_file`, `dt` (the landing day) + `reason`
    (null if valid), judged by data/ingest/line_rules.py (the rules every producer shares).

    `vocabulary` lists the engagement types and impression sources (None: the shipped one; the
    Dagster assets pass the workspace's). Referential integrity is judged separately
    (`check_references`), since it needs the lake.
    """
    def by_source(values: list[str]) -> Column:
        if not values:  # no landing file: no line, but the column keeps its type
            return F.lit(None).cast("string")
        return F.create_map(*[x for i, value in enumerate(values) for x in (F.lit(i), F.lit(value))])[F.col(SOURCE)]

    # the line as `_line`: engagements have a column named `value` of their own
    frame = lines.frame.select(F.col("value").alias(_LINE), SOURCE).withColumn(_ORDER, F.monotonically_increasing_id())
    added = from_arrow_schema(line_rules.checked_schema(contract))
    schema = T.StructType(frame.schema.fields + added.fields)
    source_days = [day for _, day in lines.sources]
    checked = frame.mapInArrow(_checked(contract, vocabulary or load_vocabulary(), source_days), schema)
    return checked.select(
        *[F.col(f.name) for f in contract.schema],
        c.REASON,
        F.col(_LINE).alias(c.RAW_LINE),
        by_source([source_file for source_file, _ in lines.sources]).alias(c.SOURCE_FILE),
        by_source(source_days).alias(c.DT),
        _ORDER,
        BAD_ENUM_VALUE,
        F.coalesce(
            reduce(Column.__or__, [F.col(name) >= F.lit(HASHED_BASE) for name in contract.id_columns]),
            F.lit(False),
        ).alias(MAPPED),
        *[_raw_id(name) for name in contract.id_columns],
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
    # The raw line is kept for the quarantine only: the windows below shuffle every row, and the
    # line is most of a valid row's bytes.
    rows = rows.withColumn(c.RAW_LINE, F.when(~valid, F.col(c.RAW_LINE)))
    index = F.create_map(*[x for i, day in enumerate(days) for x in (F.lit(day), F.lit(i))])
    rows = rows.withColumn("_i", index[F.col(c.DT)]).withColumn("_lake", F.lit(False))
    if earlier is not None:
        # no distinct (a shuffle of every look-back key): collect_set below takes each (day, lake) once
        lake_keys = earlier.select(*key, index[F.col(c.DT)].alias("_i"), F.lit(True).alias("_lake"))
        rows = rows.unionByName(lake_keys, allowMissingColumns=True)
    # One shuffle, by key, serves both windows below (each partitions by the key and more).
    rows = rows.repartition(*key)
    # A lake row has no `dt`, so it never shares a copies group with a row of the pass.
    copies = Window.partitionBy(*key, valid, c.DT).orderBy(c.SOURCE_FILE, _ORDER)
    rows = rows.withColumn("_copy", F.when(valid & ~F.col("_lake"), F.row_number().over(copies)))
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
