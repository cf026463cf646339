"""Building a SparkSession from settings: local[*] by default, a cluster or Spark Connect by URL."""

from __future__ import annotations

from pyspark.sql import SparkSession

# Small data per partition: the default 200 shuffle partitions would be mostly empty tasks.
DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.ui.showConsoleProgress": "false",
}


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
        builder = builder.config("spark.ui.enabled", "false") if master.startswith("local") else builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not remote:
        spark.sparkContext.setLogLevel("ERROR")
    return spark
