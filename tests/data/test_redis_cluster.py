"""The embedded cluster is a real three-primary Valkey cluster, and `connect`/`slot_groups` give
Loupe's code the client and the key grouping that cluster needs (a plain server needs neither)."""

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, RedisClusterException

from data.redis_client import connect, is_cluster, is_outage, slot_groups
from data.redis_cluster import SLOTS, EmbeddedCluster

pytestmark = pytest.mark.integration  # some tests start clusters of their own

# Two keys in different slots, on different nodes of a three-way split (key_slot says so below).
APART = ("a", "b")
SUM_OF_CARDS = "return redis.call('SCARD', KEYS[1]) + redis.call('SCARD', KEYS[2])"


@pytest.fixture
def cluster_client(redis_cluster):
    client = connect(redis_cluster.url)
    client.flushdb()  # every primary's
    yield client
    client.close()


@pytest.fixture
def plain_client(redis_server):
    client = connect(redis_server.url)
    client.flushdb()
    yield client
    client.close()


def node_clients(cluster: EmbeddedCluster) -> list[redis.Redis]:
    """One plain client per node: what each node itself says, not what the cluster client routes."""
    return [redis.Redis(host="127.0.0.1", port=port) for port in cluster.ports]


def test_the_cluster_forms_with_three_primaries_owning_every_slot(redis_cluster):
    assert redis_cluster.url == f"redis://127.0.0.1:{redis_cluster.ports[0]}/0"
    for node in node_clients(redis_cluster):
        info = node.execute_command("CLUSTER INFO")
        assert (info["cluster_state"], info["cluster_known_nodes"], info["cluster_size"]) == ("ok", "3", "3")
        assert info["cluster_slots_assigned"] == info["cluster_slots_ok"] == str(SLOTS)
        slot_map = node.execute_command("CLUSTER SLOTS")  # [first, last, [host, port, id], replicas...]
        ranges = sorted((first, last, owner[1]) for first, last, owner, *_ in slot_map)
        owned = [slot for first, last, _ in ranges for slot in range(first, last + 1)]
        assert owned == list(range(SLOTS))  # every slot once
        assert [port for *_, port in ranges] == redis_cluster.ports  # one range each, in slot order
        sizes = [last - first + 1 for first, last, _ in ranges]
        assert max(sizes) - min(sizes) <= 1
        nodes = node.execute_command("CLUSTER NODES")
        assert len(nodes) == 3 and all("master" in n["flags"] for n in nodes.values())


def test_connect_gives_a_cluster_client_for_a_cluster_and_a_plain_one_for_a_server(redis_cluster, redis_server):
    clustered, plain = connect(redis_cluster.url), connect(redis_server.url)
    assert isinstance(clustered, RedisCluster) and is_cluster(clustered) and is_cluster(clustered.pipeline())
    assert type(plain) is redis.Redis and not is_cluster(plain)
    assert clustered.ping() and plain.ping()
    # a cluster has db 0 only; a server keeps the db the URL names
    with pytest.raises(ValueError, match="db 1"):
        connect(redis_cluster.url.removesuffix("/0") + "/1")
    on_db_1 = connect(redis_server.url.removesuffix("/0") + "/1")
    assert on_db_1.connection_pool.connection_kwargs["db"] == 1 and on_db_1.ping()
    # kwargs a cluster client has no use for are dropped, the rest kept
    tight = connect(redis_cluster.url, socket_timeout=2.0, health_check_interval=0, db=0, decode_responses=True)
    tight.set("k", "v")
    assert tight.get("k") == "v"


def test_untagged_keys_land_on_every_node(redis_cluster, cluster_client):
    keys = [f"spread:{i}" for i in range(60)]
    for key in keys:
        cluster_client.set(key, 1)
    per_node = [node.dbsize() for node in node_clients(redis_cluster)]
    assert all(n > 0 for n in per_node) and sum(per_node) == len(keys)


def test_keys_sharing_a_hash_tag_take_part_in_one_multi_key_command(redis_cluster, cluster_client):
    a, b, union = "{u:42}:seen", "{u:42}:liked", "{u:42}:union"
    assert key_slot(a.encode()) == key_slot(b.encode()) == key_slot(union.encode())
    cluster_client.sadd(a, 1, 2)
    cluster_client.sadd(b, 2, 3)
    assert cluster_client.sunionstore(union, a, b) == 3
    assert cluster_client.smembers(union) == {b"1", b"2", b"3"}
    assert cluster_client.register_script(SUM_OF_CARDS)(keys=[a, b]) == 4
    assert cluster_client.eval(SUM_OF_CARDS, 2, a, b) == 4

    # untagged keys in different slots: redis-py refuses before sending (not a RedisError) ...
    x, y = APART
    assert key_slot(x.encode()) != key_slot(y.encode())
    cluster_client.sadd(x, 1)
    cluster_client.sadd(y, 2)
    with pytest.raises(RedisClusterException, match="same key slot"):
        cluster_client.sunionstore("{u:42}:other", x, y)
    with pytest.raises(RedisClusterException, match="same key slot"):
        cluster_client.register_script(SUM_OF_CARDS)(keys=[x, y])
    # ... and the node owning one of them would refuse too: the hash tag is the server's rule
    owner = redis.Redis.from_url(redis_cluster.url)  # owns slot 0..5460; "b" (3300) is there
    assert key_slot(y.encode()) <= 5460
    with pytest.raises(ClusterCrossSlotError, match="same slot"):  # the server's CROSSSLOT reply
        owner.eval(SUM_OF_CARDS, 2, y, x)


def test_slot_groups_keep_each_group_in_one_slot_on_a_cluster(cluster_client):
    keys = ["{u:42}:a", "a", b"{u:42}:b", "b", "a", "{u:42}:c"]
    groups = slot_groups(cluster_client, keys)
    assert groups == [[0, 2, 5], [1, 4], [3]]
    slots = [{key_slot(k if isinstance(k, bytes) else k.encode()) for k in (keys[p] for p in g)} for g in groups]
    assert all(len(s) == 1 for s in slots) and len(set().union(*slots)) == len(groups)
    for group in groups:  # each group is one script call the cluster accepts
        assert cluster_client.eval("return #KEYS", len(group), *[keys[p] for p in group]) == len(group)
    assert slot_groups(cluster_client, []) == []


def test_slot_groups_is_one_group_of_every_key_on_a_plain_server(plain_client):
    keys = ["{u:42}:a", "a", "b", "c"]
    assert slot_groups(plain_client, keys) == [[0, 1, 2, 3]]
    assert plain_client.eval("return #KEYS", len(keys), *keys) == 4  # a server takes them together
    assert slot_groups(plain_client, []) == []


def test_an_unreachable_cluster_is_an_outage_and_keys_of_several_slots_are_not(tmp_path):
    """Both raise redis-py's bare RedisClusterException: a worker waits the first out and lets the
    second (a wrong call) fail."""
    with EmbeddedCluster(primaries=1, data_dir=tmp_path) as cluster:
        client = connect(cluster.url, socket_timeout=5, socket_connect_timeout=5)
        x, y = APART
        with pytest.raises(RedisClusterException, match="same key slot") as wrong:
            client.sunionstore("{u:42}:other", x, y)
        assert not is_outage(wrong.value)
        cluster.kill_node(0)
        with pytest.raises(RedisClusterException, match="cannot be connected") as down:
            client.get("k")
        assert type(down.value) is RedisClusterException and is_outage(down.value)
    assert is_outage(redis.ConnectionError("refused")) and not is_outage(redis.ResponseError("WRONGTYPE"))


def test_a_kept_data_dir_holds_the_nodes_and_a_second_start_forms_a_new_cluster(tmp_path):
    with EmbeddedCluster(primaries=3, data_dir=tmp_path) as cluster:
        connect(cluster.url).set("k", 1)
    assert not cluster.running
    for i in range(3):
        assert (tmp_path / f"node-{i}" / "nodes.conf").exists() and (tmp_path / f"node-{i}" / "valkey.log").exists()
    with cluster:  # the last cluster's config is not loaded: a new cluster, empty
        client = connect(cluster.url)
        assert client.get("k") is None and client.dbsize() == 0
        assert len(client.get_primaries()) == 3


def test_a_start_that_fails_halfway_leaves_no_node_running(tmp_path, monkeypatch):
    """The third node cannot get its folder: the two already running are stopped, not left behind."""
    launched = []
    real_launch = EmbeddedCluster._launch

    def recording_launch(self, node_dir):
        node = real_launch(self, node_dir)
        launched.append(node.process)
        return node

    monkeypatch.setattr(EmbeddedCluster, "_launch", recording_launch)
    (tmp_path / "node-2").write_text("a file where the node's folder would go")
    cluster = EmbeddedCluster(primaries=3, data_dir=tmp_path)
    with pytest.raises(FileExistsError):
        cluster.start()
    assert len(launched) == 2 and all(p.poll() is not None for p in launched)
    assert not cluster.running


def test_a_pipeline_of_scripts_is_routed_by_their_keys_without_asking_the_server(cluster_client):
    """redis-py's own cluster pipeline asks COMMAND GETKEYS for every queued EVALSHA (a round trip
    each); connect's client routes them by their declared keys, as a single call does."""
    sha = cluster_client.script_load("return redis.call('SET', KEYS[1], ARGV[1])")

    def getkeys() -> int:
        stats = cluster_client.info("commandstats", target_nodes=cluster_client.PRIMARIES).values()
        return sum(node.get("cmdstat_command|getkeys", {}).get("calls", 0) for node in stats)

    before = getkeys()
    pipe = cluster_client.pipeline(transaction=False)
    for i in range(300):
        pipe.execute_command("EVALSHA", sha, 1, f"{{u:{i}}}:x", i)
    assert pipe.execute() == [b"OK"] * 300
    assert getkeys() == before
    assert [cluster_client.get(f"{{u:{i}}}:x") for i in (0, 7, 299)] == [b"0", b"7", b"299"]
