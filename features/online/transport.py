"""The packed reader's wire: one MGET sent pre-encoded on a redis-py pooled connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def bulk(key: bytes) -> bytes:
    """`key` as a RESP bulk string, the form `RespMget` sends."""
    return b"$%d\r\n%s\r\n" % (len(key), key)


def plain_redis(client: Any) -> bool:
    """A non-cluster redis-py client whose connections speak RESP2/3 with bytes replies."""
    import redis

    return (
        type(client) is redis.Redis
        and not client.connection_pool.connection_kwargs.get("decode_responses", False)
    )


class RespMget:
    """MGET over a redis-py connection with the command pre-encoded (cached key segments).

    redis-py would re-encode ~2,000 keys per call (~0.5 ms); the segments are cached per id, so
    the command is one join. Same pool, same connection handling as `Redis.execute_command`,
    without its retry loop: a failed read raises and the caller's policy decides."""

    def __init__(self, client: Any):
        self._client = client

    def __call__(self, segments: list[bytes]) -> list[bytes | None]:
        head = b"*%d\r\n$4\r\nMGET\r\n" % (len(segments) + 1)
        return send_pipelined(self._client, [head, b"".join(segments)], 1)[0]


def command(*parts: bytes) -> bytes:
    """One RESP command from its parts."""
    return b"*%d\r\n" % len(parts) + b"".join(map(bulk, parts))


@contextmanager
def sending_ahead(client: Any) -> Iterator[Any]:
    """A connection of `client` for commands sent ahead of their replies: the client's own if it is
    pinned to one, else one from its pool, released after. Any error drops it, since replies may be
    left unread on it."""
    own = client.connection
    conn = own or client.connection_pool.get_connection()
    try:
        yield conn
    except BaseException:
        conn.disconnect()
        raise
    finally:
        if own is None:
            client.connection_pool.release(conn)


def send_pipelined(client: Any, commands: list[bytes], replies: int) -> list[Any]:
    """Send pre-encoded commands on one pooled connection, then read `replies` replies.

    For bulk writes: redis-py's pipeline costs ~10 µs a command in Python (encoding each argument,
    wrapping each reply), more than the server's work. An error reply raises (and drops the
    connection: `sending_ahead`)."""
    with sending_ahead(client) as conn:
        conn.send_packed_command(commands)
        return [conn.read_response() for _ in range(replies)]
