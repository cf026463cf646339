"""The Explore builders' Redis writer against a real Valkey: a server that forgets its scripts in the
middle of a build (SCRIPT FLUSH, as after a restart) gets them again; the build does not fail."""

from __future__ import annotations

import uuid

import pytest
import redis

from candidate_gen.explore.redis_writer import BatchedPipeline, zadd_args


@pytest.fixture
def client(redis_server):
    return redis.Redis.from_url(redis_server.url)


def test_replace_zset_survives_a_script_flush(client):
    key = f"t{uuid.uuid4().hex[:8]}:trend"
    with BatchedPipeline(client, batch=1) as cmd:  # batch=1: every command executes at once
        cmd.replace_zset(key, zadd_args([b"1:2", b"3:4"], [1.0, 2.0]), 60)
        assert client.zrange(key, 0, -1, withscores=True) == [(b"1:2", 1.0), (b"3:4", 2.0)]
        client.script_flush()
        cmd.replace_zset(key, zadd_args([b"5:6"], [3.0]), 60)
    assert client.zrange(key, 0, -1, withscores=True) == [(b"5:6", 3.0)]
    assert 0 < client.ttl(key) <= 60


def test_a_registered_script_survives_a_script_flush(client):
    key = f"t{uuid.uuid4().hex[:8]}:n"
    incr = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    with BatchedPipeline(client) as cmd:
        cmd.script(incr, key, [2])
        cmd.flush()
        client.script_flush()
        cmd.script(incr, key, [3])
    assert client.get(key) == b"5"
    assert cmd.commands == 2
