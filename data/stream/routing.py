"""Where the event stream's commands go: its one server, or on a Redis Cluster the node holding each
key's hash slot (docs/event_stream.md, "On a Redis Cluster").

The stream's durable writes need the servers themselves, not a cluster client's routing: WAITAOF
waits for the writes of the connection it is sent on, so each node's writes and its WAITAOF go in
one pipeline of that node's own client (`by_server`). So does a blocking read of partitions in
several slots, which no one command can wait on (`first_of`).
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Sequence
from typing import Any

import redis

from data.redis_client import Client, is_cluster


class Routing:
    def __init__(self, client: Client):
        self.client = client
        self.cluster = is_cluster(client)

    def servers(self) -> list[tuple[str, redis.Redis]]:
        """Every server that may hold the stream's keys, named: the one server, or each primary."""
        if not self.cluster:
            return [("the stream's server", self.client)]
        return [(f"cluster node {node.name}", self.client.get_redis_connection(node))
                for node in self.client.get_primaries()]

    def server_of(self, key: str) -> redis.Redis:
        """A plain client of the server holding `key` (one server: the client itself)."""
        if not self.cluster:
            return self.client
        return self.client.get_redis_connection(self.client.get_node_from_key(key))

    def by_server(self, keys: Sequence[str], positions: Sequence[int]) -> list[tuple[redis.Redis, Sequence[int]]]:
        """`positions` of `keys` grouped by the server holding their key (in order), with its client."""
        if not self.cluster:
            return [(self.client, positions)]
        groups: dict[str, tuple[redis.Redis, list[int]]] = {}
        for position in positions:
            node = self.client.get_node_from_key(keys[position])
            groups.setdefault(node.name, (self.client.get_redis_connection(node), []))[1].append(position)
        return list(groups.values())

    def target(self, key: str) -> dict:
        """On a cluster, `key`'s node named, for a command whose keys redis-py would otherwise ask
        the server for (XREADGROUP: COMMAND GETKEYS, a round trip each call); else nothing."""
        return {"target_nodes": self.client.get_node_from_key(key)} if self.cluster else {}

    def refresh(self) -> None:
        """Read the cluster's slot map again (a node answered MOVED or ASK)."""
        if self.cluster:
            self.client.nodes_manager.initialize()

    def first_of(self, calls: Sequence[tuple[str, tuple]], timeout_s: float | None) -> list:
        """Run blocking commands `(key, args)` at once, each on a connection of its own to `key`'s
        server; once one answers, unblock the others (CLIENT UNBLOCK: they answer as if their
        block ended, or with what they got meanwhile). Every reply, in order (an error as its
        exception). `timeout_s`: how long to wait for the first answer (None: forever); then
        redis.TimeoutError."""
        held: list[tuple[redis.Redis, Any]] = []
        clean = False
        try:
            for key, args in calls:
                server = self.server_of(key)
                held.append((server, server.connection_pool.get_connection()))
                held[-1][1].send_packed_command(held[-1][1].pack_commands([("CLIENT", "ID"), args]))
            ids = [connection.read_response() for _, connection in held]
            _until_one_answers([connection for _, connection in held], timeout_s)
            for (server, connection), client_id in zip(held, ids, strict=True):
                if not connection.can_read(timeout=0):
                    server.execute_command("CLIENT", "UNBLOCK", client_id)
            replies = [_reply(server, connection, args[0]) for (server, connection), (_, args)
                       in zip(held, calls, strict=True)]
            clean = True
            return replies
        finally:
            for server, connection in held:
                if not clean:  # a reply may still be on its way: the connection cannot be reused
                    connection.disconnect()
                server.connection_pool.release(connection)


def _until_one_answers(connections: list, timeout_s: float | None) -> None:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        for connection in connections:
            selector.register(connection._sock, selectors.EVENT_READ)  # redis-py's socket, connected
        while not any(connection.can_read(timeout=0) for connection in connections):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise redis.TimeoutError(f"no server answered a blocking read within {timeout_s} s")
            selector.select(left)


def _reply(server: redis.Redis, connection, command: str):
    try:
        return server.parse_response(connection, command)
    except redis.ResponseError as exc:  # read whole: the connection stays usable
        return exc
