"""The stream feature worker with its state and rows on a real Redis Cluster (the session's
three-primary Valkey cluster) gives what it gives on one server.

The event stream stays on a one-server durable Valkey (LOUPE_STREAM_URL apart from REDIS_URL is a
supported deployment); the worker's state, marks, dirty sets, online rows and trending sets are on
the cluster, each apply script keeping to one slot (spec.StateKeys, docs/streaming_features.md "On a
Redis Cluster"). Checked against a twin worker on one server fed the same engagements:

- Feast's `get_online_features`, the packed reader and the trending sets are equal, and the
  state keys are spread over more than one node (generated worlds, hypothesis);
- a worker that dies after sending part of a poll's slices (the others never sent) leaves counts
  that come out exact once another worker re-delivers the batch: nothing counted twice, nothing lost;
- a state key's owner is the stream's partition of its entity, and the key parses back;
- the warm start writes on a cluster what it writes on one server;
- the senders' `ahead()` (features/online/transport.py) on both deployments, and a claim whose
  replies came back with an error made again through redis-py's client.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager

import numpy as np
import pytest
import redis
from feast import FeatureStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from data.days import day_of_ms
from data.redis_client import connect
from data.redis_server import EmbeddedRedis
from data.stream.entries import Event
from data.stream.said import post_event
from data.stream.valkey_stream import ValkeyStream
from features.online import PackedFeatureReader
from features.online.transport import command, sender_for
from features.store import apply, repo_config
from features.streaming import spec
from features.streaming.warm_start import warm_start
from features.streaming.worker import StreamFeatureWorker
from tests.features.test_streaming_features import (
    AUTHOR_OF,
    HOUR,
    MIN,
    T0,
    TYPES,
    VOCABULARY,
    Killed,
    append,
    drain,
    land_engagements,
    line,
    recompute,
    service_rows,
    two_days_of_engagements,
)

SERVER_DB = 12
PARTITIONS = 3
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def stores(redis_cluster, redis_server, tmp_path_factory) -> tuple[FeatureStore, FeatureStore]:
    """The workspace's Feast repo twice: its online store on the cluster, and on one server."""
    out = []
    for name, url in (("cluster", redis_cluster.url), ("server", _server_url(redis_server))):
        root = tmp_path_factory.mktemp(f"realtime-{name}")
        store = FeatureStore(config=repo_config(str(root / "registry.db"), url))
        apply(store, root / "lake")
        out.append(store)
    return out[0], out[1]


@pytest.fixture(scope="module")
def stream_server(tmp_path_factory):
    with EmbeddedRedis(data_dir=tmp_path_factory.mktemp("stream"), durable=True) as server:
        yield server


def _server_url(redis_server) -> str:
    return redis_server.url.rsplit("/", 1)[0] + f"/{SERVER_DB}"


def _clients(redis_cluster, redis_server) -> tuple[redis.cluster.RedisCluster, redis.Redis]:
    """Both online stores' clients, emptied."""
    cluster, server = connect(redis_cluster.url), redis.Redis.from_url(_server_url(redis_server))
    cluster.flushall()  # every primary
    server.flushdb()
    return cluster, server


def _stream(stream_server) -> ValkeyStream:
    """A stream of its own on the stream server (a prefix of its own: groups and marks start afresh)."""
    client = redis.Redis.from_url(stream_server.url, decode_responses=True)
    return ValkeyStream(client, PARTITIONS, prefix=f"test:cluster:{next(_prefixes)}")


def _world(engagements: list[tuple[int, int, int, int]]) -> list[tuple[int, Event]]:
    """(arrival ms, event): the posts published with hashtags, then the engagements (viewer, post,
    type index, minutes after T0), each arriving a minute after it happened."""
    events = [(T0 - HOUR, post_event(post, AUTHOR_OF[post], T0 - HOUR, hashtags=("cats",) if post % 2 else ("food",)))
              for post in AUTHOR_OF]
    for k, (viewer, post, kind, minute) in enumerate(engagements):
        ts = T0 + minute * MIN
        value = 20_000.0 if TYPES[kind] == "dwell" else None
        text = line(f"g{k}", viewer, post, TYPES[kind], ts, value)
        events.append((ts + MIN, Event("engagements", text, str(viewer))))
    return sorted(events, key=lambda pair: pair[0])


def _both(stream_server, events) -> tuple[ValkeyStream, ValkeyStream]:
    twins = _stream(stream_server), _stream(stream_server)
    for stream in twins:
        append(stream, events)
    return twins


def _trending(client) -> dict[bytes, list]:
    keys = client.scan_iter(match=f"{spec.trend_key()}*".encode(), count=1_000)
    return {key: client.zrange(key, 0, -1, withscores=True) for key in keys}


def _state_nodes(redis_cluster) -> set[int]:
    """The ports of the cluster's nodes holding state keys, all tagged (each node asked itself)."""
    return {port for port in redis_cluster.ports
            if any(True for _ in redis.Redis(host="127.0.0.1", port=port).scan_iter(match=f"{spec.PREFIX}:*{{*"))}


def assert_same_online(stores, clients, stream) -> None:
    """Both stores serve the same rows (Feast's and the packed reader's) and trending sets."""
    posts, authors, pairs, sequences = recompute(stream)
    rows = service_rows(posts, authors, pairs)
    entity_rows = [dict(zip(rows, r)) for r in zip(*rows.values())]
    feast, packed = [], []
    for store, client in zip(stores, clients):
        feast.append(store.get_online_features(features=store.get_feature_service(spec.SERVICE),
                                               entity_rows=entity_rows).to_dict())
        feast.append(store.get_online_features(features=[f"{spec.SEQUENCE_VIEW}:recent_post_ids"],
                                               entity_rows=[{"viewer_id": v} for v in sorted(sequences)]).to_dict())
        packed.append(PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=client).read(rows))
    assert feast[0] == feast[2] and feast[1] == feast[3]
    assert feast[3]["recent_post_ids"] == [sequences[v] for v in sorted(sequences)]
    for field in ("values", "missing", "event_ts_us"):
        np.testing.assert_array_equal(getattr(packed[0], field), getattr(packed[1], field))
    assert not packed[0].missing.all()
    assert _trending(clients[0]) == _trending(clients[1])


engagement = st.tuples(st.integers(1, 40), st.sampled_from(sorted(AUTHOR_OF)), st.integers(0, len(TYPES) - 1),
                       st.integers(0, 26 * 60))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(engagements=st.lists(engagement, min_size=30, max_size=150), chunk=st.sampled_from([7, 40, 100]))
def test_the_worker_on_a_cluster_serves_what_it_serves_on_one_server(stores, stream_server, redis_cluster,
                                                                      redis_server, engagements, chunk):
    keys = spec.StateKeys(PARTITIONS)  # a viewer on every partition, so state on more than one node
    engagements = [(next(v for v in range(1, 41) if keys.owner("viewer", v) == q), 10, 0, 0)
                   for q in range(PARTITIONS)] + engagements
    engagements += [(v, 11, TYPES.index("like"), 26 * 60) for v in (1, 2, 3, 4)]  # post 11 trends
    clients = _clients(redis_cluster, redis_server)
    streams = _both(stream_server, _world(engagements))
    workers = []
    for store, client, stream, name in zip(stores, clients, streams, ("cluster", "server")):
        workers.append([StreamFeatureWorker(stream, store, client=client, name=f"{name}-a", chunk=chunk,
                                            partitions=[0]),
                        StreamFeatureWorker(stream, store, client=client, name=f"{name}-b", chunk=chunk,
                                            partitions=[1, 2])])
        stats = drain(*workers[-1])
        assert all(s.reconciles for s in stats) and sum(s.applied for s in stats) == len(engagements)
    assert_same_online(stores, clients, streams[0])
    trending = b"11:%d" % AUTHOR_OF[11]
    assert trending in dict(clients[0].zrange(spec.trend_key(), 0, -1, withscores=True))
    # a deleted post leaves the trending sets (its hashtags read back per slot on the cluster)
    for stream, pair in zip(streams, workers):
        append(stream, [(T0 + 27 * HOUR, post_event(11, AUTHOR_OF[11], T0 - HOUR, deleted_ms=T0 + 27 * HOUR))])
        drain(*pair)
        for worker in pair:
            worker.close()
    assert _trending(clients[0]) == _trending(clients[1])
    assert all(trending not in dict(members) for members in _trending(clients[0]).values())
    assert len(_state_nodes(redis_cluster)) > 1
    # every state key and mark is tagged with its owner partition; nothing untagged is left on the cluster
    tagged = [k for k in clients[0].scan_iter(match=f"{spec.PREFIX}:*".encode(), count=1_000) if b"{" in k]
    assert {k.split(b":")[2] for k in tagged} >= {b"post", b"author", b"va", b"seq", b"applied"}


@pytest.mark.parametrize("sent", [1, 4, 7])
def test_a_worker_dead_between_slices_leaves_exact_counts_once_the_batch_is_delivered_again(
        stores, stream_server, redis_cluster, redis_server, sent):
    """The doomed worker sends its first `sent` slices only (a crash while sending: the later ones never
    left), then dies before writing or acknowledging anything. Its successor re-delivers the batch in
    chunks cut elsewhere: the slices applied before are duplicates, the others apply, once."""
    rng = np.random.default_rng(sent)
    engagements = [(int(rng.integers(1, 30)), int(rng.choice(sorted(AUTHOR_OF))), int(rng.integers(0, len(TYPES))),
                    int(rng.integers(0, 600))) for _ in range(120)]
    clients = _clients(redis_cluster, redis_server)
    streams = _both(stream_server, _world(engagements))
    reference = StreamFeatureWorker(streams[1], stores[1], client=clients[1], name="reference")
    drain(reference)
    reference.close()

    doomed = StreamFeatureWorker(streams[0], stores[0], client=clients[0], name="doomed", chunk=15)
    slices, left = doomed._slices, [sent]

    def first_slices_only(rows, named):
        out = {}
        for q, effects in slices(rows, named).items():
            if left[0] > 0:
                out[q] = effects
            left[0] -= 1
        return out

    def dies(step: str) -> None:
        if step == "applied":
            raise Killed(step)
    doomed._slices, doomed.on_step = first_slices_only, dies
    with pytest.raises(Killed):
        doomed.poll()
    doomed.close()
    assert left[0] < 0  # some slices were never sent

    heir = StreamFeatureWorker(streams[0], stores[0], client=clients[0], name="heir", chunk=11)
    stats = drain(heir)
    heir.close()
    assert all(s.reconciles for s in stats) and sum(s.reclaimed for s in stats) > 0
    assert sum(s.applied + s.duplicates for s in stats) == len(engagements)
    assert_same_online(stores, clients, streams[0])


def test_state_keys_are_owned_as_the_stream_partitions_and_parse_back(stream_server):
    """A post or author is owned by the stream's partition of its untagged identity, a viewer by its
    engagements' partition (keyed by viewer); each key carries its owner's hash tag and parses back."""
    stream, keys = _stream(stream_server), spec.StateKeys(PARTITIONS)
    for i in range(300):
        assert keys.owner("post", i) == stream.partition_of(f"{spec.PREFIX}:post:{i}")
        assert keys.owner("author", i) == stream.partition_of(f"{spec.PREFIX}:author:{i}")
        assert keys.owner("viewer", i) == stream.partition_of(str(i))
        q, pair = keys.key("va", i, 7)
        assert pair == f"{spec.PREFIX}:va:{{{q}}}:{i}:7" and q == keys.owner("viewer", i)
        assert spec.parse_state_key(pair.encode()) == ("va", (i, 7))
        assert spec.parse_state_key(keys.key("seq", i)[1].encode()) == ("seq", (i,))
    assert keys.mark(2, 0) == f"{spec.PREFIX}:applied:{{2}}:0"


def test_a_sender_sends_ahead_to_each_node_and_returns_error_replies_as_values(redis_cluster, redis_server):
    """`sender_for(client).ahead()`: commands queued per node as they come, every reply read back in
    the commands' order, an error reply as a value with the replies after it read too."""
    keys = [f"ahead:{{{i}}}".encode() for i in range(6)]
    assert len({redis_cluster_node(redis_cluster, k) for k in keys}) > 1
    for client in _clients(redis_cluster, redis_server):
        with sender_for(client).ahead() as ahead:
            for key in keys:
                ahead.send(key, command(b"SET", key, b"x"))
            ahead.flush()
            ahead.send(keys[0], command(b"INCR", keys[0]))  # not an integer: an error reply
            for key in keys:
                ahead.send(key, command(b"GET", key))
            replies = ahead.replies()
        assert replies[:6] == [b"OK"] * 6 and replies[7:] == [b"x"] * 6
        assert isinstance(replies[6], redis.ResponseError)


def redis_cluster_node(redis_cluster, key: bytes) -> str:
    return connect(redis_cluster.url).nodes_manager.get_node_from_slot(key_slot(key)).name


def test_a_warm_start_on_a_cluster_writes_what_it_writes_on_one_server(stores, redis_cluster, redis_server, tmp_path):
    """The warm start (features/streaming/warm_start.py) writes the worker's tagged keys and rows on a
    cluster as on one server; an entity whose state the cluster holds is left alone."""
    start = (T0 // 86_400_000 + 1) * 86_400_000
    rows = two_days_of_engagements(np.random.default_rng(5), start, 150)
    land_engagements(rows, tmp_path / "lake")
    clients = _clients(redis_cluster, redis_server)
    reports = [warm_start(store, tmp_path / "lake", day_of_ms(start + 86_400_000), VOCABULARY, client=client,
                          partitions=PARTITIONS) for store, client in zip(stores, clients)]
    assert reports[0] == reports[1] and reports[0]["post_written"] == 12
    assert len(_state_nodes(redis_cluster)) > 1
    keys = service_rows(set(AUTHOR_OF), set(AUTHOR_OF.values()), set(zip(rows["viewer_id"], rows["author_id"])))
    blocks = [PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=client).read(keys)
              for store, client in zip(stores, clients)]
    for field in ("values", "missing", "event_ts_us"):
        np.testing.assert_array_equal(getattr(blocks[0], field), getattr(blocks[1], field))
    assert not blocks[0].missing[:-2].all(axis=1).any()  # every known entity has a row
    assert _trending(clients[0]) == _trending(clients[1])
    again = warm_start(stores[0], tmp_path / "lake", day_of_ms(start + 86_400_000), VOCABULARY, client=clients[0],
                       partitions=PARTITIONS)
    assert again["post_held"] == 12 and not sum(n for name, n in again.items() if name.endswith("_written"))


def test_a_claim_answered_with_an_error_is_made_again_through_the_client(stores, redis_cluster, redis_server,
                                                                        stream_server, monkeypatch):
    """A claim whose pre-encoded commands came back with an error (MOVED while slots move) is made
    again through redis-py's cluster client, which follows redirections: the dirty set is claimed."""
    cluster, _ = _clients(redis_cluster, redis_server)
    worker = StreamFeatureWorker(_stream(stream_server), stores[0], client=cluster, name="claims")
    rows = worker.rows
    cluster.sadd(rows.dirty_key(1), b"k1", b"k2")
    sent_ahead = rows.sender.ahead

    @contextmanager
    def moved():
        with sent_ahead() as ahead:
            replies = ahead.replies
            ahead.replies = lambda: [*replies()[:-1], redis.exceptions.MovedError("3999 127.0.0.1:1")]
            yield ahead
    monkeypatch.setattr(rows.sender, "ahead", moved)
    assert rows.claim([0, 1]) == ({b"k1", b"k2"}, [rows.claimed_key(1).encode()])
    assert cluster.smembers(rows.claimed_key(1)) == {b"k1", b"k2"} and not cluster.exists(rows.dirty_key(1))
    worker.close()
