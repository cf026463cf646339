"""Where feature tables live: lake/features/<table>/dt=<day>/ (Parquet), one snapshot per day."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from data import lake
from features.jobs.inputs import MissingInputError
from features.tables import FeatureTable

FEATURES_DIR = "features"


def feature_table_dir(lake_dir: Path, table: FeatureTable | str) -> Path:
    name = table if isinstance(table, str) else table.name
    return Path(lake_dir) / FEATURES_DIR / name


def feature_partition_dir(lake_dir: Path, table: FeatureTable | str, day: str) -> Path:
    return feature_table_dir(lake_dir, table) / f"dt={day}"


def write_feature_partition(frame: DataFrame, lake_dir: Path, table: FeatureTable, day: str) -> Path:
    """Overwrite one day's snapshot (re-running a day replaces it)."""
    path = feature_partition_dir(lake_dir, table, day)
    frame.select(*table.columns).write.mode("overwrite").parquet(str(path))
    return path


def read_feature_partition(spark: SparkSession, lake_dir: Path, table: FeatureTable, day: str) -> DataFrame:
    path = feature_partition_dir(lake_dir, table, day)
    if not (path / "_SUCCESS").exists():
        raise MissingInputError(f"feature snapshot {table.name} {day} is missing: {path}")
    return spark.read.parquet(str(path))


def feature_days(lake_dir: Path, table: FeatureTable | str) -> list[str]:
    return lake.partition_days(Path(lake_dir) / FEATURES_DIR, table if isinstance(table, str) else table.name)
