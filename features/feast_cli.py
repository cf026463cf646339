"""`make feast ARGS="..."`: the feast CLI on Loupe's repo, configured from settings.

    make feast ARGS="apply"
    make feast ARGS="feature-views list"
    make feast ARGS="materialize-incremental 2026-10-15T00:00:00"

Redis is REDIS_URL or the embedded server (started here if it is not running). After a
materialize command the packed view the ranking service reads is rebuilt from Feast's keys, so
the CLI path leaves the two online views consistent, as the Dagster asset does.
"""

from __future__ import annotations

import subprocess
import sys

import redis

from data.redis_server import redis_endpoint
from data.settings import get_settings, subprocess_env
from features.online.packer import PackedViewWriter
from features.store import REPO_DIR, feature_store, online_store_config, registry_location


def _running(url: str) -> bool:
    # Only "is anything answering there?": a server and a cluster node both answer PING, so a plain
    # client does (connect() would ask INFO and map the cluster's slots for nothing).
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def run(args: list[str], redis_url: str) -> int:
    settings = get_settings()
    online = online_store_config(redis_url)  # one server, or a cluster's nodes in Feast's cluster mode
    env = subprocess_env({
        "LOUPE_FEAST_REGISTRY": registry_location(settings),
        "LOUPE_FEAST_REDIS_TYPE": online.get("redis_type", "redis"),
        "LOUPE_FEAST_REDIS": online["connection_string"],
    })
    code = subprocess.call([sys.executable, "-m", "feast.cli.cli", "-c", str(REPO_DIR), *args], env=env)
    if code == 0 and args and args[0].startswith("materialize"):
        store = feature_store(settings, redis_url)
        writer = PackedViewWriter(store)
        for view in store.list_feature_views():
            stats = writer.pack_all(view.name)
            print(f"packed {view.name}: {stats.written} entities")
    return code


def main(argv: list[str]) -> int:
    settings = get_settings()
    if settings.redis_url or _running(settings.redis_endpoint):
        return run(argv, settings.redis_endpoint)
    with redis_endpoint(None, settings.redis_dir, settings.embedded_redis_port) as url:
        return run(argv, url)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
