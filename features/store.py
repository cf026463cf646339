"""The Feast FeatureStore for Loupe, configured in code from Settings.

features/feature_repo/feature_store.yaml says the same for the `feast` CLI (`make feast`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from feast import FeatureStore, RepoConfig

from data.settings import Settings
from features.feature_repo.definitions import FeastRepo, build_repo

REPO_DIR = Path(__file__).resolve().parent / "feature_repo"
PROJECT = "loupe"
MATERIALIZE_BATCH_ROWS = 20_000


def redis_connection_string(redis_url: str, db: int | None = None) -> str:
    """redis://[:password@]host:port/db -> Feast's 'host:port,db=N[,password=...][,ssl=true]'
    (`db` overrides the URL's database)."""
    url = urlparse(redis_url)
    parts = [f"{url.hostname or 'localhost'}:{url.port or 6379}"]
    db = str(db) if db is not None else (url.path or "/0").lstrip("/") or "0"
    parts.append(f"db={db}")
    if url.password:
        parts.append(f"password={url.password}")
    if url.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def registry_location(settings: Settings) -> str:
    return settings.feast_registry or str(settings.home / "feast" / "registry.db")


def repo_config(registry: str, redis_url: str, offline_store: str = "file",
                spark_master: str = "local[*]") -> RepoConfig:
    """`offline_store`: "file" reads the lake's Parquet with DuckDB (Feast's dask file store
    fails point-in-time joins where no entity matches); "spark" uses Feast's Spark offline store."""
    offline: dict = {"type": "duckdb"}
    if offline_store == "spark":
        offline = {"type": "spark", "spark_conf": {"spark.master": spark_master}}
    if "://" in registry:  # a SQL registry (postgresql://..., sqlite:///...)
        registry_config = {"registry_type": "sql", "path": registry, "cache_ttl_seconds": 60}
    else:
        Path(registry).parent.mkdir(parents=True, exist_ok=True)
        registry_config = {"registry_type": "file", "path": registry, "cache_ttl_seconds": 60}
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry=registry_config,
        online_store={"type": "redis", "connection_string": redis_connection_string(redis_url)},
        offline_store=offline,
        entity_key_serialization_version=3,
        # Convert and write in batches: one batch of a 3M-pair snapshot took ~18 GB in protobufs.
        materialization={"online_write_batch_size": MATERIALIZE_BATCH_ROWS, "pull_latest_features": True},
        repo_path=str(REPO_DIR),
    )


def feature_store(settings: Settings, redis_url: str) -> FeatureStore:
    config = repo_config(registry_location(settings), redis_url, settings.feast_offline_store,
                         settings.spark_master)
    return FeatureStore(config=config)


def apply(store: FeatureStore, lake_dir: Path) -> FeastRepo:
    """`feast apply` for the workspace's lake: register (or update) every definition."""
    repo = build_repo(lake_dir)
    store.apply(repo.objects)
    return repo
