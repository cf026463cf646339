"""The Feast FeatureStore for Loupe, configured in code from Settings.

features/feature_repo/feature_store.yaml says the same for the `feast` CLI (`make feast`), for one
server only: here a Redis Cluster node's URL configures Feast's cluster mode (`online_store_config`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import redis
from feast import FeatureStore, RepoConfig
from redis.backoff import NoBackoff
from redis.retry import Retry

from data.redis_client import PROBE_TIMEOUT_S, connect, is_cluster
from data.settings import Settings
from features.feature_repo.definitions import FeastRepo, build_repo

logger = logging.getLogger(__name__)

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


def cluster_connection_string(redis_url: str, nodes: Sequence[tuple[str, int]] = ()) -> str:
    """redis://[:password@]host:port[/0] of a Redis Cluster node -> Feast's cluster form
    'host:port[,host:port...][,password=...][,ssl=true]': the URL's node first, then `nodes` (other
    nodes of the cluster, so that Feast's client still finds it if the URL's node is down). No db:
    a cluster has db 0 only, and redis-py's cluster client refuses the argument."""
    url = urlparse(redis_url)
    first = (url.hostname or "localhost", url.port or 6379)
    parts = [f"{host}:{port}" for host, port in dict.fromkeys([first, *nodes])]
    if url.password:
        parts.append(f"password={url.password}")
    if url.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def online_store_config(redis_url: str, db: int | None = None) -> dict:
    """Feast's Redis online store for the Redis at `redis_url` (`db` overrides the URL's database):
    the server is asked once whether it is a Redis Cluster node (data.redis_client.connect). A
    cluster gets Feast's cluster mode (`redis_type: redis_cluster`, every primary as a startup
    node); a plain server, or a Redis that cannot be reached now (a store used offline only needs
    none; its online calls fail then as they would have), the plain server's string. Raises
    ValueError for a cluster with a db other than 0."""
    plain = {"type": "redis", "connection_string": redis_connection_string(redis_url, db)}
    url = urlparse(redis_url)
    probe_url = url._replace(path=f"/{db}").geturl() if db is not None else redis_url
    try:
        # asked once, without redis-py's default retries (seconds of backoff for a Redis that is down)
        client = connect(probe_url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S,
                         retry=Retry(NoBackoff(), 0))
    except (redis.ConnectionError, redis.TimeoutError) as error:
        if isinstance(error, redis.AuthenticationError):
            raise
        logger.warning("Redis at %s:%s not reachable (%s): Feast configured for one server",
                       url.hostname, url.port, error)
        return plain
    try:
        if not is_cluster(client):
            return plain
        nodes = [(node.host, int(node.port)) for node in client.get_primaries()]
    finally:
        client.close()
    return {"type": "redis", "redis_type": "redis_cluster",
            "connection_string": cluster_connection_string(redis_url, nodes)}


def registry_location(settings: Settings) -> str:
    return settings.feast_registry or str(settings.home / "feast" / "registry.db")


def repo_config(registry: str, redis_url: str, offline_store: str = "file",
                spark_master: str = "local[*]") -> RepoConfig:
    """`offline_store`: "file" reads the lake's Parquet with DuckDB (Feast's dask file store
    fails point-in-time joins where no entity matches); "spark" uses Feast's Spark offline store.
    The online store is Feast's Redis store on one server or in cluster mode, as the Redis at
    `redis_url` is (`online_store_config`)."""
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
        online_store=online_store_config(redis_url),
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
