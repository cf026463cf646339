"""Loupe's online side on a real Redis Cluster gives what it gives on one server.

The same sample repo (same seed, same project) twice: its online store on the session's
three-primary Valkey cluster (Feast's cluster mode, configured from the URL) and in a database of
the session's single server. Feast's own materialize, the packed view, `write_window`, the SCAN
repack and purge, and Spark's refresh (both writers' commands routed per node) must leave the
same keys and values in both, Feast's `get_online_features` must return the same, and the packed
reader exactly the same block, also when its slot map is stale (a resharding).
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import timedelta
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import redis
from feast.infra.online_stores.redis import RedisType

from data.columns import AUTHOR_ID, POST_ID, VIEWER_ID
from data.redis_client import connect
from features.online import DEFAULT_NAMESPACE, PackedFeatureReader, PackedViewWriter, materialize_packed
from features.online.bulk_write import split_views, write_window
from features.online.sample_repo import ANCHOR, SERVICE, SampleRepo, SampleSizes, build_sample_repo
from features.online.spark_write import Covered, refresh_window, refreshed_window
from features.online.transport import ClusterMget, ClusterSender, command, send_pipelined
from features.store import online_store_config, redis_connection_string, repo_config
from tests.features.test_online_bulk_write import _add_rows
from tests.features.test_online_reader import UNKNOWN_AUTHORS, UNKNOWN_POSTS, UNKNOWN_VIEWERS, assert_parity

FULL_WINDOW = (ANCHOR - timedelta(days=40), ANCHOR)
NEWER = (ANCHOR + timedelta(minutes=1), ANCHOR + timedelta(days=1))
SERVER_DB = 10  # the single server's database for the twins (projects keep the tests apart)
SIZES = SampleSizes(posts=120, authors=30, viewers=12, pairs=300, null_fraction=0.15)


def _server_url(redis_server) -> str:
    return f"{redis_server.url.rsplit('/', 1)[0]}/{SERVER_DB}"


def _twins(root: Path, redis_cluster, redis_server, project: str, **kw) -> tuple[SampleRepo, SampleRepo]:
    """The same repo on the cluster and on the single server (nothing of `project` in either yet)."""
    on_cluster = build_sample_repo(root / "cluster", redis_cluster.url, project=project, **kw)
    on_server = build_sample_repo(root / "server", redis_server.url, db=SERVER_DB, project=project, **kw)
    assert not _contents(connect(redis_cluster.url), project)
    assert not _contents(connect(_server_url(redis_server)), project)
    return on_cluster, on_server


def _contents(client, project: str) -> dict[bytes, tuple]:
    """Every key of `project` (Feast's hashes end with it, packed keys start with it): type, value,
    and whether it expires. On a cluster, SCAN and each read go to every primary / the key's node."""
    keys = [*client.scan_iter(match=b"*" + project.encode(), count=1_000),
            *client.scan_iter(match=f"{DEFAULT_NAMESPACE}:{project}:*".encode(), count=1_000)]
    out = {}
    for key in keys:
        kind = client.type(key)
        value = client.hgetall(key) if kind == b"hash" else client.get(key)
        out[key] = (kind, value, client.pttl(key) > 0)
    return out


def assert_same_online_store(redis_cluster, redis_server, project: str) -> int:
    on_cluster = _contents(connect(redis_cluster.url), project)
    on_server = _contents(connect(_server_url(redis_server)), project)
    assert on_cluster.keys() == on_server.keys()
    different = [k for k in on_cluster if on_cluster[k] != on_server[k]]
    assert not different, f"{len(different)} keys differ, e.g. {different[:3]}"
    return len(on_cluster)


def _spread_over_nodes(redis_cluster, project: str) -> set[int]:
    """The ports of the cluster's nodes holding keys of `project` (each node asked itself)."""
    return {port for port in redis_cluster.ports
            if any(True for _ in redis.Redis(host="127.0.0.1", port=port).scan_iter(match=b"*" + project.encode()))}


def _request(repo: SampleRepo, n: int = 300, seed: int = 1) -> dict[str, np.ndarray]:
    """Rows mixing known and unknown posts, authors, viewers and pairs, with repeats."""
    rng = np.random.default_rng(seed)
    frames = repo.frames
    pairs = frames["viewer_author"][[VIEWER_ID, AUTHOR_ID]].drop_duplicates().to_numpy()
    picked = pairs[rng.integers(0, len(pairs), n)]
    authors = np.where(rng.random(n) < 0.8, picked[:, 1],
                       rng.choice(np.r_[frames["author_stats"][AUTHOR_ID].unique(), UNKNOWN_AUTHORS], n))
    viewers = np.where(rng.random(n) < 0.9, picked[:, 0],
                       rng.choice(np.r_[frames["viewer_stats"][VIEWER_ID].unique(), UNKNOWN_VIEWERS], n))
    posts = rng.choice(np.r_[frames["post_stats"][POST_ID].unique(), UNKNOWN_POSTS], n)
    return {POST_ID: posts.astype(np.int64), AUTHOR_ID: authors.astype(np.int64),
            VIEWER_ID: viewers.astype(np.int64)}


def _feast(repo: SampleRepo, request: dict[str, np.ndarray]) -> dict:
    rows = [dict(zip(request, map(int, values))) for values in zip(*request.values())]
    return repo.store.get_online_features(repo.service, rows).to_dict(include_event_timestamps=True)


def assert_same_block(a, b) -> None:
    assert a.feature_names == b.feature_names and a.view_names == b.view_names
    for field in ("values", "missing", "view_found", "view_stale", "event_ts_us"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


# --- Feast's configuration ------------------------------------------------------------------------
def test_a_cluster_node_configures_feasts_cluster_mode_and_a_server_stays_as_it_was(redis_cluster, redis_server,
                                                                                   tmp_path):
    cluster = repo_config(str(tmp_path / "registry.db"), redis_cluster.url).online_store
    assert cluster.redis_type == RedisType.redis_cluster
    nodes = cluster.connection_string.split(",")  # every primary, the URL's first; no db
    assert nodes[0] == f"127.0.0.1:{redis_cluster.ports[0]}"
    assert sorted(nodes) == sorted(f"127.0.0.1:{port}" for port in redis_cluster.ports)

    server_url = _server_url(redis_server)
    server = repo_config(str(tmp_path / "registry.db"), server_url).online_store
    assert server.redis_type == RedisType.redis
    assert server.connection_string == redis_connection_string(server_url)
    assert server.connection_string.endswith(f",db={SERVER_DB}")
    assert online_store_config(redis_server.url, db=3)["connection_string"].endswith(",db=3")

    with pytest.raises(ValueError, match="db 0 only"):  # a cluster has db 0 only
        online_store_config(redis_cluster.url, db=2)


def test_a_redis_that_cannot_be_reached_is_configured_as_one_server(caplog):
    """Offline-only uses (training) build the store without Redis: they must not fail or wait."""
    with socket.socket() as held:  # bound, never listening: a connection is refused at once
        held.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{held.getsockname()[1]}/2"
        with caplog.at_level(logging.WARNING, logger="features.store"):
            config = online_store_config(url)
    assert config == {"type": "redis", "connection_string": redis_connection_string(url)}
    assert "not reachable" in caplog.text


# --- Feast's materialize, the packed view and the reader ------------------------------------------
@pytest.fixture(scope="module")
def twins(redis_cluster, redis_server, tmp_path_factory) -> tuple[SampleRepo, SampleRepo]:
    """Both twins materialized with Feast's materialize and packed (read-only for the tests below)."""
    connect(redis_cluster.url).flushdb()  # every primary's
    connect(_server_url(redis_server)).flushdb()
    on_cluster, on_server = _twins(tmp_path_factory.mktemp("cluster_twins"), redis_cluster, redis_server, "cl_read")
    for repo in (on_cluster, on_server):
        stats = materialize_packed(repo.store, *FULL_WINDOW)
        assert all(s.written == s.entities_read > 0 for s in stats.values())
    return on_cluster, on_server


def test_materialize_into_a_cluster_writes_what_it_writes_into_one_server(twins, redis_cluster, redis_server):
    on_cluster, on_server = twins
    assert assert_same_online_store(redis_cluster, redis_server, "cl_read") > 2 * SIZES.posts
    assert _spread_over_nodes(redis_cluster, "cl_read") == set(redis_cluster.ports)

    request = _request(on_cluster)
    from_cluster = _feast(on_cluster, request)
    assert from_cluster == _feast(on_server, request)
    assert sum(v is not None for v in from_cluster["post_like_rate"]) > len(request[POST_ID]) // 2


def test_the_packed_reader_on_a_cluster_reads_what_it_reads_on_one_server(twins):
    on_cluster, on_server = twins
    cluster_reader = PackedFeatureReader.from_feature_store(on_cluster.store, SERVICE)
    server_reader = PackedFeatureReader.from_feature_store(on_server.store, SERVICE)
    assert cluster_reader.check() == server_reader.check() == dict.fromkeys(server_reader.view_names, True)
    for seed in range(3):
        request = _request(on_cluster, seed=seed)
        block = cluster_reader.read(request)
        assert_same_block(block, server_reader.read(request))
        assert_parity(block, _feast(on_cluster, request))
        assert block.view_found.any(axis=0).all() and not block.view_found.all()  # known and unknown
    empty = {POST_ID: [], AUTHOR_ID: [], VIEWER_ID: []}
    assert_same_block(cluster_reader.read(empty), server_reader.read(empty))


def _stale_slot_map(client) -> tuple[object, list[int]]:
    """`client`'s slot map made stale, as after a resharding: it says the second primary serves the
    first one's slots. -> the first primary, the slots moved in the map."""
    first, second = client.get_primaries()[:2]
    slots = client.nodes_manager.slots_cache
    moved = [slot for slot, nodes in slots.items() if nodes[0].name == first.name]
    for slot in moved:
        slots[slot] = [second]
    return first, moved


def test_the_cluster_reader_follows_a_stale_slot_map(twins, redis_cluster, caplog):
    """After a resharding the client's slot map is stale: the nodes answer MOVED, the read is asked
    again through redis-py's cluster path, which follows it and refreshes the map."""
    on_cluster, _ = twins
    client = connect(redis_cluster.url)
    reader = PackedFeatureReader.from_feature_store(on_cluster.store, SERVICE, client=client)
    request = _request(on_cluster, seed=7)
    fresh = reader.read(request)

    first, moved = _stale_slot_map(client)
    with caplog.at_level(logging.INFO, logger="features.online.transport"):
        assert_same_block(reader.read(request), fresh)
    assert "falls back to mget_nonatomic: MovedError" in caplog.text
    now = client.nodes_manager.slots_cache  # the map is right again
    assert all(now[slot][0].name == first.name for slot in moved)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="features.online.transport"):
        assert_same_block(reader.read(request), fresh)
    assert "falls back" not in caplog.text


def test_a_cluster_client_cannot_take_one_servers_pipelined_commands(redis_cluster):
    """The one-server wire (the stream worker's rows) refuses a cluster client plainly."""
    with pytest.raises(TypeError, match="node owning its keys' slot"):
        send_pipelined(connect(redis_cluster.url), [b"*1\r\n$4\r\nPING\r\n"], 1)
    assert isinstance(PackedFeatureReader(connect(redis_cluster.url), [], [], np.zeros(0))._mget, ClusterMget)


# --- the write paths --------------------------------------------------------------------------------
@pytest.mark.parametrize("key_ttl_seconds", [None, 3_600], ids=["no_ttl", "feast_key_ttl"])
def test_write_window_on_a_cluster_writes_what_it_writes_on_one_server(redis_cluster, redis_server, tmp_path,
                                                                        key_ttl_seconds):
    """The bulk writer's pre-encoded commands, routed by key on a cluster (`ClusterSender`: the packed
    records as one SET each, not one MSET), leave the same keys, values and expiries as on one
    server, through a first window and newer rows; with Feast's key TTL the packed keys' expiry
    mirrors it. Nothing goes through Feast's materialize."""
    project = f"cl_write_{key_ttl_seconds or 0}"
    on_cluster, on_server = _twins(tmp_path, redis_cluster, redis_server, project, sizes=SIZES,
                                   key_ttl_seconds=key_ttl_seconds)
    assert split_views(PackedViewWriter(on_cluster.store), None)[1] == []
    with patch("features.online.bulk_write.materialize_packed", side_effect=AssertionError("Feast's path")):
        first = [write_window(repo.store, *FULL_WINDOW) for repo in (on_cluster, on_server)]
    assert first[0] == first[1]
    assert assert_same_online_store(redis_cluster, redis_server, project) > 2 * SIZES.posts
    assert _spread_over_nodes(redis_cluster, project) == set(redis_cluster.ports)

    posts = sorted(int(p) for p in on_cluster.frames["post_stats"][POST_ID].unique())[:10] + [5]
    for repo in (on_cluster, on_server):
        _add_rows(repo, ANCHOR + timedelta(hours=1), posts)
    newer = [write_window(repo.store, *NEWER, ["post_stats"])["post_stats"] for repo in (on_cluster, on_server)]
    assert newer[0] == newer[1] and newer[0].written == len(posts)
    assert_same_online_store(redis_cluster, redis_server, project)
    for repo in (on_cluster, on_server):  # the registry records both windows, as materialize does
        intervals = [(a, b) for a, b in repo.store.get_feature_view("post_stats").materialization_intervals]
        assert FULL_WINDOW in intervals and NEWER in intervals

    request = _request(on_cluster)
    assert_same_block(PackedFeatureReader.from_feature_store(on_cluster.store, SERVICE).read(request),
                      PackedFeatureReader.from_feature_store(on_server.store, SERVICE).read(request))


def test_the_cluster_writer_follows_a_stale_slot_map(redis_cluster, redis_server, tmp_path, caplog):
    """After a resharding the writer's slot map is stale: a node answers MOVED, the batch is sent
    again on a refreshed map (its commands are idempotent) and lands where one server's does."""
    sizes = SampleSizes(posts=60, authors=8, viewers=4, pairs=30)
    on_cluster, on_server = _twins(tmp_path, redis_cluster, redis_server, "cl_moved", sizes=sizes)
    client = connect(redis_cluster.url)
    first, moved = _stale_slot_map(client)
    with caplog.at_level(logging.INFO, logger="features.online.transport"):
        write_window(on_cluster.store, *FULL_WINDOW, ["post_stats"], client=client)
    assert "sent again on a fresh slot map: MovedError" in caplog.text
    assert all(client.nodes_manager.slots_cache[slot][0].name == first.name for slot in moved)
    write_window(on_server.store, *FULL_WINDOW, ["post_stats"])
    assert assert_same_online_store(redis_cluster, redis_server, "cl_moved") == 2 * sizes.posts + 1


def test_a_cluster_sender_sends_a_command_once_its_map_is_right_and_raises_when_it_stays_wrong(redis_cluster):
    """Replies come back in the commands' order from every node; a second MOVED is not followed
    further: the writer's caller sees the error (a refresh run fails and is run again)."""
    client = connect(redis_cluster.url)
    client.flushall()
    keys = [b"cs:%d" % i for i in range(200)]
    sender = ClusterSender(client)
    assert sender.send(keys, [command(b"SET", k, k + b"!") for k in keys]) == [b"OK"] * len(keys)
    assert sender.send(keys, [command(b"GET", k) for k in keys]) == [k + b"!" for k in keys]
    assert len({client.get_node_from_key(k).name for k in keys}) == len(redis_cluster.ports)

    wrong = client.get_primaries()[0]
    with patch.object(client.nodes_manager, "initialize"):  # a refresh that fixes nothing
        client.nodes_manager.slots_cache = {slot: [wrong] for slot in range(16384)}
        with pytest.raises(redis.exceptions.MovedError):
            sender.send(keys, [command(b"GET", k) for k in keys])


def test_scan_repack_and_purge_on_a_cluster(redis_cluster, redis_server, tmp_path):
    """SCAN walks every primary; UNLINK of keys of many slots is split by slot."""
    on_cluster, _ = _twins(tmp_path, redis_cluster, redis_server, "cl_pack",
                           sizes=SampleSizes(posts=200, authors=10, viewers=4, pairs=20))
    materialize_packed(on_cluster.store, *FULL_WINDOW, ["post_stats"])
    client = connect(redis_cluster.url)
    writer = PackedViewWriter(on_cluster.store, client)
    layout = writer.layout("post_stats")
    packed = {k: client.get(k) for k in client.scan_iter(match=layout.key_prefix + b"*")}
    assert len(packed) == 200 + 1  # the records and the meta key

    records = [k for k in packed if k != layout.meta_key]
    assert client.delete(*records) == 200  # DEL of many slots, split by redis-py
    assert writer.pack_all("post_stats").written == 200
    assert {k: client.get(k) for k in client.scan_iter(match=layout.key_prefix + b"*")} == packed

    old = [layout.view_prefix + b"v0.00000000:%d" % i for i in range(300)]  # an older generation's keys
    client.mset_nonatomic(dict.fromkeys(old, b"old"))
    assert len({client.keyslot(k) for k in old}) > 100
    assert writer.purge_old_generations("post_stats") == 300
    assert client.exists(*old) == 0
    assert {k: client.get(k) for k in client.scan_iter(match=layout.key_prefix + b"*")} == packed


@pytest.mark.spark
def test_spark_refresh_on_a_cluster_writes_what_it_writes_on_one_server(spark, redis_cluster, redis_server, tmp_path):
    """Spark's workers open a cluster client of their own (`ClientSpec`) and route each command to
    its node: a full refresh, then an incremental one of newer rows, end as the server's do."""
    sizes = SampleSizes(posts=40, authors=6, viewers=4, pairs=20)
    on_cluster, on_server = _twins(tmp_path, redis_cluster, redis_server, "cl_spark", sizes=sizes)
    with patch("features.online.spark_write.materialize_packed", side_effect=AssertionError("Feast's path")):
        by_cluster = refresh_window(spark, on_cluster.store, *FULL_WINDOW, ["post_stats"])["post_stats"]
    by_server = refresh_window(spark, on_server.store, *FULL_WINDOW, ["post_stats"])["post_stats"]
    assert by_cluster == by_server and by_cluster.mode.startswith("full: no earlier")
    assert by_cluster.written == on_cluster.frames["post_stats"][POST_ID].nunique()
    assert assert_same_online_store(redis_cluster, redis_server, "cl_spark") == 2 * by_cluster.written + 2
    assert refreshed_window(on_cluster.store, "post_stats") == Covered(*FULL_WINDOW)
    marker = json.loads(connect(redis_cluster.url).get(
        PackedViewWriter(on_cluster.store).layout("post_stats").key_prefix + b"_refreshed"))
    assert marker == {"start": FULL_WINDOW[0].isoformat(), "end": FULL_WINDOW[1].isoformat()}

    posts = sorted(int(p) for p in on_cluster.frames["post_stats"][POST_ID].unique())[:5]
    for repo in (on_cluster, on_server):
        _add_rows(repo, ANCHOR + timedelta(hours=1), posts)
    newer = [refresh_window(spark, repo.store, *NEWER, ["post_stats"])["post_stats"]
             for repo in (on_cluster, on_server)]
    assert newer[0] == newer[1] and newer[0].mode == "incremental" and newer[0].written == len(posts)
    assert_same_online_store(redis_cluster, redis_server, "cl_spark")
