"""The event stream on a real three-primary Valkey cluster, where it differs from one server: one
consumer reads partitions on every node, a blocking read sees entries on partitions it is not
waiting on, and an append waits for the fsync of each node that took its entries, on the
connection that wrote them (docs/event_stream.md, "On a Redis Cluster"). The behaviour shared with
one server is test_event_stream.py's, run on both."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import redis

from data.redis_cluster import HOST, EmbeddedCluster
from data.stream.entries import Event
from data.stream.valkey_stream import NotDurable, ValkeyStream


def node(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, decode_responses=True)


@pytest.fixture
def stream(empty_cluster_aof) -> ValkeyStream:
    return ValkeyStream.connect(empty_cluster_aof.url, partitions=4, fsync_timeout_ms=500)


def events_on(stream: ValkeyStream, partitions: set[int], n: int) -> list[Event]:
    """`n` events whose entities fall in `partitions`."""
    keys = (str(k) for k in range(10**6) if stream.partition_of(str(k)) in partitions)
    return [Event("engagements", json.dumps({"event_id": f"e{i}"}), next(keys)) for i in range(n)]


def port_of(stream: ValkeyStream, partition: int) -> int:
    return stream.client.get_node_from_key(stream.key(partition)).port


def blocked_clients(ports: list[int]) -> int:
    total = 0
    for port in ports:
        with node(port) as client:
            total += int(client.info("clients")["blocked_clients"])
    return total


def test_one_consumer_reads_the_partitions_of_every_node(stream, redis_cluster_aof):
    assert {port_of(stream, p) for p in range(4)} == set(redis_cluster_aof.ports)  # 4 partitions, 3 nodes
    stream.create_group("g")
    ids = stream.append(events_on(stream, {0, 1, 2, 3}, 40))
    got = stream.read("g", "c", count=100)
    assert sorted(e.id for e in got) == sorted(ids) and {e.partition for e in got} == {0, 1, 2, 3}
    assert stream.read("g", "c", count=100, block_ms=50) == []  # a blocking read of nothing ends
    assert stream.ack("g", got) == 40 and stream.lag("g").backlog == 0


def test_blocking_reads_take_every_entry_of_every_partition_once(stream, redis_cluster_aof):
    """Each read's slots all answer (the ones that had entries at once, the others ended): every
    entry is returned once, none left pending unseen, no read left blocked."""
    stream.create_group("g")
    ids = stream.append(events_on(stream, {0, 1, 2, 3}, 60))
    got = []
    while batch := stream.read("g", "c", count=7, block_ms=50):
        got += batch
    assert sorted(e.id for e in got) == sorted(ids)
    assert stream.lag("g").pending == 60 and blocked_clients(redis_cluster_aof.ports) == 0


def test_a_blocking_read_waits_on_every_partition_at_once(stream, redis_cluster_aof):
    """Blocked on all four partitions' slots (three nodes), it returns as soon as an entry comes
    to any one, here on another node than the first partition's."""
    stream.create_group("g")
    other = next(p for p in range(4) if port_of(stream, p) != port_of(stream, 0))
    appended: list[str] = []
    read = threading.Event()

    def append_once_it_waits() -> None:
        while not read.is_set() and blocked_clients(redis_cluster_aof.ports) < 4:  # the servers say it waits
            pass
        appended.extend(stream.append(events_on(stream, {other}, 1)))

    producer = threading.Thread(target=append_once_it_waits)
    producer.start()
    got = stream.read("g", "c", block_ms=60_000)  # returns at once with the entry, not after the minute
    read.set()
    producer.join()
    assert [(e.partition, e.id) for e in got] == [(other, appended[0])]
    assert blocked_clients(redis_cluster_aof.ports) == 0  # the other reads were ended


def test_an_append_waits_for_the_fsync_of_each_node_that_took_its_entries(stream, redis_cluster_aof):
    """A node that does not fsync (appendfsync no): an append touching it times out (NotDurable);
    one touching only the others returns. WAITAOF sent elsewhere than the node that wrote, or on
    another of its connections (none of its writes to wait for), would return at once."""
    default = stream.client.get_default_node().port
    slow = next(p for p in range(4) if port_of(stream, p) != default)
    others = {p for p in range(4) if port_of(stream, p) != port_of(stream, slow)}
    with node(port_of(stream, slow)) as client:
        waited = waitaof_calls(client)
        client.config_set("appendfsync", "no")
        try:
            assert all(stream.append(events_on(stream, others, 20)))
            with pytest.raises(NotDurable, match="not fsynced within 500 ms"):
                stream.append(events_on(stream, others | {slow}, 20))
        finally:
            client.config_set("appendfsync", "always")
        assert waitaof_calls(client) == waited + 1  # only the second
    assert all(stream.append(events_on(stream, {slow}, 5)))


def waitaof_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_waitaof", {}).get("calls", 0))


def move_slot(slot: int, source: redis.Redis, target: redis.Redis, nodes: list[redis.Redis]) -> None:
    """Give an empty `slot` from `source` to `target`, as a resharding does (with no key to move)."""
    source_id, target_id = source.execute_command("CLUSTER MYID"), target.execute_command("CLUSTER MYID")
    target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    for client in [target, source, *[n for n in nodes if n not in (source, target)]]:
        client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)


def test_an_append_to_a_partition_whose_slot_moved_follows_it_and_waits_for_its_new_node(
        stream, redis_cluster_aof):
    """The client's slot map still names the old node: that node answers MOVED (nothing written),
    and the append goes on at the new one, WAITAOF there."""
    slot = stream.client.keyslot(stream.key(0))
    source = port_of(stream, 0)
    target = next(port for port in redis_cluster_aof.ports if port != source)
    nodes = {port: node(port) for port in redis_cluster_aof.ports}
    try:
        move_slot(slot, nodes[source], nodes[target], list(nodes.values()))
        waited = waitaof_calls(nodes[target])
        ids = stream.append(events_on(stream, {0}, 10))
        assert all(ids) and nodes[target].xlen(stream.key(0)) == 10
        assert waitaof_calls(nodes[target]) == waited + 1
        assert port_of(stream, 0) == target  # the slot map, read again
    finally:
        nodes[target].delete(stream.key(0))
        move_slot(slot, nodes[target], nodes[source], list(nodes.values()))
        for client in nodes.values():
            client.close()


def test_a_cluster_with_a_node_without_an_append_only_file_is_refused(redis_cluster):
    """The plain session cluster (no append-only files), given one on every node but the last."""
    ports = redis_cluster.ports
    clients = [node(port) for port in ports]
    try:
        for client in clients[:-1]:
            client.config_set("appendonly", "yes")
        with pytest.raises(NotDurable, match=f"cluster node {HOST}:{ports[-1]} writes no append-only file"):
            ValkeyStream.connect(redis_cluster.url)
    finally:
        for client in clients:
            client.config_set("appendonly", "no")
            client.close()


@pytest.mark.integration  # a cluster of its own: its nodes are killed
def test_an_appended_event_survives_the_crash_of_each_node():
    with EmbeddedCluster(primaries=3, appendonly=True) as cluster:
        stream = ValkeyStream.connect(cluster.url, partitions=4)
        sent = events_on(stream, {0, 1, 2, 3}, 300)
        ids = stream.append(sent)
        for i in range(cluster.primaries):
            cluster.kill_node(i)  # SIGKILL: only the fsynced append-only file is left
            cluster.restart_node(i)
        stream = ValkeyStream.connect(cluster.url, partitions=4)
        after = [e for p in range(4) for e in stream.after(p, "0-0", 1000)]
        assert sorted(e.id for e in after) == sorted(ids)
        assert Counter(e.line for e in after) == Counter(e.line for e in sent)
