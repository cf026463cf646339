"""Dagster resources: every client an asset uses is injected from here, built from Settings."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pyspark.sql import SparkSession

from data.settings import Settings
from data.spark import build_spark_session
from features.store import registry_location


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
    """The workspace folders: landing (exports arrive), lake (Parquet), truth (simulator only;
    empty for a team's data), and the log vocabulary file (empty: the shipped one)."""

    landing_dir: str
    lake_dir: str
    truth_dir: str = ""
    vocabulary_path: str = ""

    @property
    def landing(self) -> Path:
        return Path(self.landing_dir)

    @property
    def lake(self) -> Path:
        return Path(self.lake_dir)

    @property
    def truth(self) -> Path | None:
        return Path(self.truth_dir) if self.truth_dir else None

    def vocabulary(self):
        from data.vocabulary import load_vocabulary

        return load_vocabulary(self.vocabulary_path or None)


class FeastResource(dg.ConfigurableResource):
    """The Feast feature store: registry, Redis online store, offline store over the lake."""

    registry: str
    redis_url: str
    lake_dir: str
    offline_store: str = "file"
    spark_master: str = "local[*]"

    def store(self):
        from feast import FeatureStore

        from features.store import repo_config

        return FeatureStore(
            config=repo_config(self.registry, self.redis_url, self.offline_store, self.spark_master)
        )


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking + registry: SQLite under LOUPE_HOME by default, or a server URL."""

    tracking_uri: str
    artifact_root: str = ""

    def client(self):
        from training.tracking import connect

        return connect(self.tracking_uri, self.artifact_root or None)


class TrainingConfigResource(dg.ConfigurableResource):
    """Where the ranker training config lives (training/config.toml by default)."""

    path: str = ""

    def load(self):
        from training.config import DEFAULT_PATH, TrainingConfig

        return TrainingConfig.load(self.path or DEFAULT_PATH)


class RedisResource(dg.ConfigurableResource):
    """The Redis that holds the feed caches and Explore sets (the embedded Valkey by default)."""

    url: str

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=30, socket_connect_timeout=5)


class CandidatesDirResource(dg.ConfigurableResource):
    """Where candidate generation keeps files (the nearest-neighbour indexes)."""

    path: str


class CandidateConfigResource(dg.ConfigurableResource):
    """Where the candidate generation config lives (candidate_gen/config.toml by default)."""

    path: str = ""

    def load(self):
        from candidate_gen.config import DEFAULT_PATH, CandidateConfig

        return CandidateConfig.load(self.path or DEFAULT_PATH)


def build_resources(settings: Settings, redis_url: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """Every resource, from settings. `redis_url` overrides where Redis is (tests); by default
    REDIS_URL or the embedded server's fixed port (`make run` / `make ui` start it)."""
    resources: dict[str, dg.ConfigurableResource] = {
        "spark": SparkResource(
            master=settings.spark_master,
            remote=settings.spark_remote,
            driver_memory=settings.spark_driver_memory,
        ),
        "workspace": WorkspaceResource(
            landing_dir=str(settings.landing_dir),
            lake_dir=str(settings.lake_dir),
            truth_dir=str(settings.truth_dir or ""),
            vocabulary_path=str(settings.vocabulary or ""),
        ),
    }
    resources["feast"] = FeastResource(
        registry=registry_location(settings),
        redis_url=redis_url or settings.redis_endpoint,
        lake_dir=str(settings.lake_dir),
        offline_store=settings.feast_offline_store,
        spark_master=settings.spark_master,
    )
    resources["mlflow"] = MlflowResource(
        tracking_uri=settings.tracking_uri, artifact_root=str(settings.mlflow_artifact_root)
    )
    resources["training_config"] = TrainingConfigResource()
    resources["redis"] = RedisResource(url=redis_url or settings.redis_endpoint)
    resources["candidate_config"] = CandidateConfigResource()
    resources["candidates_dir"] = CandidatesDirResource(path=str(settings.home / "candidates"))
    return resources

