"""Dagster resources: every client an asset uses is injected from here, built from Settings."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pyspark.sql import SparkSession

from data.settings import Settings
from data.spark import build_spark_session


class SparkResource(dg.ConfigurableResource):
    """A SparkSession: local[*] by default, a standalone master, or Spark Connect (sc://...)."""

    master: str = "local[*]"
    remote: str | None = None
    driver_memory: str = "4g"

    def session(self) -> SparkSession:
        # getOrCreate: the assets of one run process share a session instead of paying start-up
        # (~10 s) per asset.
        return build_spark_session(self.master, self.remote, self.driver_memory)


class WorkspaceResource(dg.ConfigurableResource):
    """The workspace folders: landing (exports arrive), lake (Parquet), truth (simulator only)."""

    landing_dir: str
    lake_dir: str
    truth_dir: str

    @property
    def landing(self) -> Path:
        return Path(self.landing_dir)

    @property
    def lake(self) -> Path:
        return Path(self.lake_dir)

    @property
    def truth(self) -> Path:
        return Path(self.truth_dir)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "spark": SparkResource(
            master=settings.spark_master,
            remote=settings.spark_remote,
            driver_memory=settings.spark_driver_memory,
        ),
        "workspace": WorkspaceResource(
            landing_dir=str(settings.landing_dir),
            lake_dir=str(settings.lake_dir),
            truth_dir=str(settings.truth_dir),
        ),
    }
