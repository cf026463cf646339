"""The embedded Valkey server speaks the real protocol and starts/stops/restarts cleanly."""

import pytest
import redis

from data.redis_server import EmbeddedRedis, redis_endpoint

pytestmark = pytest.mark.integration  # each test starts its own Valkey server


def test_embedded_server_serves_and_restarts_on_the_same_port(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path / "r") as server:
        client = redis.Redis.from_url(server.url)
        client.zadd("feed:1", {"p1": 1.0, "p2": 2.0})
        assert client.zrevrange("feed:1", 0, -1) == [b"p2", b"p1"]
        url = server.url
        server.restart()
        assert server.url == url and redis.Redis.from_url(url).ping()
    assert not server.running


def test_redis_endpoint_prefers_the_configured_url(tmp_path):
    with redis_endpoint("redis://example:6379/0", tmp_path) as url:
        assert url == "redis://example:6379/0"


def test_redis_endpoint_starts_and_stops_an_embedded_server(tmp_path):
    with redis_endpoint(None, tmp_path / "redis") as url:
        assert redis.Redis.from_url(url).ping()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        reachable = True
    except redis.ConnectionError:
        reachable = False
    assert not reachable
