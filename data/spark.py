"""Building a SparkSession from settings: local[*] by default, a cluster or Spark Connect by URL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from data import columns as c
from data import lake
from data.contracts import CONTRACTS, LogContract
from data.settings import export_spark_env

DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    # A shuffle starts with 64 partitions and adaptive execution merges the small ones (a tiny day
    # ends up in one or two tasks): with a fixed 8, a medium world's 14-day backfill gave each task
    # ~2M wide rows to sort, more than a 4 GB driver holds.
    "spark.sql.shuffle.partitions": "64",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.ui.showConsoleProgress": "false",
    # Parquet timestamps as UTC-adjusted micros (not legacy INT96): pandas/pyarrow/Feast read them
    # back tz-aware.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # pandas writes nanosecond timestamps, which Spark cannot read as timestamps: read them as longs
    # (ns since epoch) rather than fail; a reader that needs times converts (features.online.spark_write)
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}
# The driver JVM's logging from its first line: errors only (the file says why). Spark's default
# profile would log INFO/WARN at start-up, before `setLogLevel` can run.
LOG4J2_CONFIG = Path(__file__).resolve().parent / "spark-log4j2.properties"


def build_spark_session(
    master: str = "local[*]",
    remote: str | None = None,
    driver_memory: str = "4g",
    app_name: str = "loupe",
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A Spark Connect session when `remote` is set (sc://host:port), else a classic session."""
    conf = {**DEFAULT_CONF, **(extra_conf or {})}
    builder = SparkSession.builder.appName(app_name)
    if remote:
        builder = builder.remote(remote)
    else:
        builder = builder.master(master).config("spark.driver.memory", driver_memory)
        # read by spark-submit when it starts the driver JVM (client mode: this process's own)
        java_options = f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}"
        conf["spark.driver.extraJavaOptions"] = " ".join(
            filter(None, [java_options, conf.get("spark.driver.extraJavaOptions")]))
        export_spark_env()  # Python workers in this interpreter (ingestion's line rules run in them)
        if master.startswith("local"):
            # Local mode needs no network interface: bind to loopback, skip the UI.
            builder = (
                builder.config("spark.ui.enabled", "false")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
            )
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not remote:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_type(arrow_type: pa.DataType) -> T.DataType:
    """The Spark type a contract column lands as in the lake."""
    if pa.types.is_list(arrow_type):
        return T.ArrayType(spark_type(arrow_type.value_type))
    if pa.types.is_timestamp(arrow_type):
        return T.TimestampType()
    simple = {
        pa.int64(): T.LongType(),
        pa.int32(): T.IntegerType(),
        pa.float64(): T.DoubleType(),
        pa.float32(): T.FloatType(),
        pa.bool_(): T.BooleanType(),
        pa.string(): T.StringType(),
    }
    return simple[arrow_type]


def lake_schema(contract: LogContract) -> T.StructType:
    return T.StructType(
        [T.StructField(f.name, spark_type(f.type), nullable=True) for f in contract.schema]
    )


def read_lake(spark: SparkSession, lake_dir: Path, table: str, days: list[str]) -> DataFrame | None:
    """The given landing days of a lake log, typed by its contract; None when `days` is empty."""
    paths = [str(lake.partition_dir(lake_dir, table, d)) for d in days]
    if not paths:
        return None
    return spark.read.schema(lake_schema(CONTRACTS[table])).parquet(*paths)


def read_lake_days(spark: SparkSession, lake_dir: Path, table: str, days: list[str]) -> DataFrame | None:
    """`read_lake`, each row with the landing day it was read from (`dt`, its partition folder's)."""
    frame = read_lake(spark, lake_dir, table, days)
    day = F.regexp_extract(F.col("_metadata.file_path"), f"/{c.DT}=([^/]+)/[^/]+$", 1)
    return None if frame is None else frame.withColumn(c.DT, day)
