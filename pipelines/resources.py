"""Dagster resources: the ones several domains share (Spark, the workspace folders, Feast), and
`build_resources`, which binds every resource of every domain from Settings (a domain's own
resources are in pipelines/defs/<domain>/resources.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pyspark.sql import SparkSession

from data.settings import Settings
from data.spark import build_spark_session
from features.store import registry_location
from pipelines.defs.candidates.resources import candidate_resources
from pipelines.defs.ingest.resources import ingest_resources
from pipelines.defs.training.resources import training_resources


def _default(field: str):
    """A Settings field's default: a resource built without settings (a test) gets the same, written once."""
    return Settings.model_fields[field].default


class SparkResource(dg.ConfigurableResource):
    """A SparkSession: local[*] by default, a standalone master, or Spark Connect (sc://...)."""

    master: str = _default("spark_master")
    remote: str | None = None
    driver_memory: str = _default("spark_driver_memory")
    # a day's independent jobs (logs, feature tables) submitted at once: data/job_graph.py
    concurrent_jobs: int = _default("spark_concurrent_jobs")

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
    live_posts_file: str = ""  # what live mode published, for the truth to judge (data/world/live_posts.py)
    live_played_file: str = ""  # which days live mode played, at what clock speed (data/world/live_played.py)
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

    @property
    def live_posts(self) -> Path | None:
        return Path(self.live_posts_file) if self.live_posts_file else None

    def truth_model(self):
        """The simulator's hidden truth with the posts live mode published, None for a team's data."""
        if self.truth is None or not (self.truth / "meta.json").exists():
            return None
        from data.world import TruthModel
        from data.world.live_posts import with_live_posts

        return with_live_posts(TruthModel.load(self.truth), self.live_posts)

    def clock_speed_of(self, day: str) -> float:
        """The clock's speed `day` was served at: live mode's for a day it played, else real time."""
        from data.world.live_played import Played

        return Played.read(Path(self.live_played_file)).speed_of(day) if self.live_played_file else 1.0

    def vocabulary(self):
        from data.vocabulary import load_vocabulary

        return load_vocabulary(self.vocabulary_path or None)


class FeastResource(dg.ConfigurableResource):
    """The Feast feature store: registry, Redis online store, offline store over the lake."""

    registry: str
    redis_url: str
    lake_dir: str
    offline_store: str = _default("feast_offline_store")
    spark_master: str = _default("spark_master")

    def store(self):
        from feast import FeatureStore

        from features.store import repo_config

        return FeatureStore(
            config=repo_config(self.registry, self.redis_url, self.offline_store, self.spark_master)
        )


def build_resources(settings: Settings, redis_url: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """Every resource, from settings. `redis_url` overrides where Redis is (tests); by default
    REDIS_URL or the embedded server's fixed port (`make run` / `make ui` start it)."""
    resources: dict[str, dg.ConfigurableResource] = {
        "spark": SparkResource(
            master=settings.spark_master,
            remote=settings.spark_remote,
            driver_memory=settings.spark_driver_memory,
            concurrent_jobs=settings.spark_concurrent_jobs,
        ),
        "workspace": WorkspaceResource(
            landing_dir=str(settings.landing_dir),
            lake_dir=str(settings.lake_dir),
            truth_dir=str(settings.truth_dir or ""),
            live_posts_file=str(settings.live_posts_file) if settings.truth_dir else "",
            live_played_file=str(settings.live_played_file) if settings.truth_dir else "",
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
    resources.update(ingest_resources(settings))
    resources.update(training_resources(settings))
    resources.update(candidate_resources(settings, redis_url))
    return resources

