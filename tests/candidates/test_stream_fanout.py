"""Fan-out from the event stream: a post published onto the stream reaches a follower's Home read
once the fan-out consumer polls; graph changes and deletions go the same way; a line the worker
cannot act on is dead-lettered with its reason, another log's entry is ignored, and every entry
read is accounted for; a dead consumer's entries are reclaimed."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading

import pytest
import redis

from candidate_gen import events as ev
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import default_chain
from candidate_gen.home import HomeCandidateReader
from candidate_gen.rebuild import build_feeds
from candidate_gen.stream_events import Unreadable, convert, to_row
from candidate_gen.stream_fanout import GROUP, FanoutStreamConsumer
from data.days import day_of_ms, iso_ms
from data.ids import to_id
from data.redis_server import EmbeddedRedis
from data.stream.entries import Entry, Event
from data.stream.leases import PartitionTaken
from data.stream.said import graph_event, post_event
from data.stream.valkey_stream import ValkeyStream
from tests.candidates.helpers import HOUR, T0, dump, fresh_config


@pytest.fixture
def client(redis_server):
    return redis.Redis.from_url(redis_server.url)


@pytest.fixture(params=["server", "cluster"])
def stream(request, tmp_path):
    """The stream on a durable server of the test's own, or on the session's append-only cluster."""
    if request.param == "cluster":
        yield ValkeyStream.connect(request.getfixturevalue("empty_cluster_aof").url, partitions=3)
        return
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        yield ValkeyStream.connect(server.url, partitions=3)


def account(user_id: int, private: bool = False) -> Event:
    line = {"user_id": user_id, "created_at": iso_ms(T0 - 10 * HOUR), "updated_at": iso_ms(T0 - 10 * HOUR),
            "is_private": private, "is_verified": False, "country": "FR"}
    return Event("users", json.dumps(line), str(user_id))


def home(client, cfg, viewer: int, now: int = T0 + 10 * HOUR) -> list[int]:
    read = HomeCandidateReader(client, cfg).read(viewer, now, 1000)
    return [c.post_id for c in default_chain(client, cfg, seen=False).run(viewer, read.candidates, now).kept]


def test_lines_read_as_the_workers_events_by_ingestions_rules_with_ids_mapped_alike():
    day = day_of_ms(T0)
    assert to_row("posts", post_event(5, 7, T0).line, day) == (T0, "post", 5, 7, T0)
    assert to_row("posts", post_event(5, 7, T0, T0 + 9).line, day) == (T0 + 9, "delete", 5, 7, T0)
    assert to_row("follows", graph_event("follow", 1, 2, T0).line, day) == (T0, "follow", 1, 2, 0)
    assert to_row("blocks", graph_event("mute", 1, 2, T0).line, day) == (T0, "mute", 1, 2, 0)
    team = json.dumps({"follower_id": "u-anna", "followee_id": "u-bob", "action": "follow",
                       "ts": f"{day}T08:00:00Z"})
    assert to_row("follows", team, day)[2:4] == (to_id("u-anna"), to_id("u-bob"))
    for log, line, reason in [("posts", "{oops", "malformed_json"),
                              ("follows", json.dumps({"follower_id": 1, "followee_id": 2, "action": "poke",
                                                      "ts": iso_ms(T0)}), "bad_enum:action"),
                              ("users", json.dumps({"user_id": 1, "updated_at": iso_ms(T0)}),
                               "missing_required:created_at"),
                              ("posts", json.dumps({"post_id": True, "author_id": 1, "created_at": iso_ms(T0),
                                                    "media_type": "photo"}), "bad_type:post_id"),
                              ("follows", graph_event("follow", 1, 2, T0 + 3 * 86_400_000).line, "ts_in_future")]:
        with pytest.raises(Unreadable, match=reason):
            to_row(log, line, day)


def test_a_post_on_the_stream_reaches_a_followers_home_and_every_entry_is_accounted_for(client, stream):
    cfg = fresh_config()
    worker = FanoutWorker(client, cfg, name="stream")
    consumer = FanoutStreamConsumer(stream, worker)
    stream.append([account(u) for u in (1, 2, 7)], at_ms=T0)
    assert consumer.poll().applied == 3
    build_feeds(client, cfg, [1, 2], T0)  # active viewers: their caches exist

    stream.append([graph_event("follow", 2, 7, T0 + 1)], at_ms=T0 + 1)
    stream.append([post_event(100, 7, T0 + 2)], at_ms=T0 + 2)
    stream.append([Event("engagements", json.dumps({"event_id": "e1"}), "e1"),
                   Event("posts", "{not json", "bad")], at_ms=T0 + 3)
    stats = consumer.poll()
    assert (stats.entries, stats.applied, stats.ignored, dict(stats.dead_lettered)) == (
        4, 2, 1, {"malformed_json": 1})
    assert stats.reconciles and stats.fanout.fanout_targets == 1
    assert home(client, cfg, 2) == [100] and home(client, cfg, 1) == []
    [letter] = stream.dead_letters()
    assert letter["reason"] == "malformed_json" and letter["line"] == "{not json" and letter["log"] == "posts"

    stream.append([post_event(100, 7, T0 + 2, T0 + 5)], at_ms=T0 + 5)  # deleted
    consumer.poll()
    assert home(client, cfg, 2) == []
    assert stream.lag(GROUP).backlog == 0


def test_a_dead_consumers_batch_is_reclaimed_and_applied(client, stream):
    cfg = fresh_config()
    stream.append([account(u) for u in (1, 7)], at_ms=T0)
    consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg), name="fanout-2", reclaim_idle_ms=0)
    consumer.poll()
    build_feeds(client, cfg, [1], T0)
    stream.append([graph_event("follow", 1, 7, T0 + 1), post_event(200, 7, T0 + 2)], at_ms=T0 + 2)
    taken = stream.read(GROUP, "fanout-1", count=10)  # fanout-1 took the batch, then died
    assert len(taken) == 2 and home(client, cfg, 1) == []
    stats = consumer.poll()
    assert stats.reclaimed == 2 and stats.applied == 2
    assert home(client, cfg, 1) == [200] and stream.lag(GROUP).backlog == 0


def state(client, cfg) -> dict:
    """The candidate state without its key prefix (two prefixes compared)."""
    return {key.removeprefix(cfg.keys.prefix): value for key, value in dump(client, cfg).items()}


def test_two_workers_owning_partitions_reach_the_state_one_worker_reaches(client, stream):
    cfg_two, cfg_one = fresh_config(), fresh_config()
    users = list(range(1, 13))
    for cfg in (cfg_one, cfg_two):  # the same accounts and caches on both sides
        FanoutWorker(client, cfg).consume(ev.frame(convert([
            Entry(0, "0-1", "users", account(u).line) for u in users]).rows))
        build_feeds(client, cfg, users, T0)
    said, t = [], T0 + 1
    for k in range(66):  # follows, unfollows and re-follows of a few pairs (ending followed), posts between
        a, b = 1 + k % 6, 7 + (k * 5) % 6
        said += [graph_event("follow" if (k // 6) % 2 == 0 else "unfollow", a, b, t), post_event(1000 + k, b, t + 1)]
        t += 2
    for k, event in enumerate(said):  # one at a time, as producers say them
        stream.append([event], at_ms=T0 + 1 + k)
    entries = [e for p in range(stream.partitions) for e in stream.after(p, "0-0", 1000)]
    FanoutWorker(client, cfg_one).consume(ev.frame(convert(entries).rows))  # the reference: one ordered pass

    first = FanoutStreamConsumer(stream, FanoutWorker(client, cfg_two), name="fanout-a", batch=7, partitions=[0])
    second = FanoutStreamConsumer(stream, FanoutWorker(client, cfg_two), name="fanout-b", batch=5,
                                  partitions=[1, 2])
    with pytest.raises(PartitionTaken, match="partition 1"):
        FanoutStreamConsumer(stream, FanoutWorker(client, cfg_two), name="fanout-c", partitions=[1])
    assert stream.read(GROUP, "fanout-a", count=3, partitions=[0])  # a batch taken, never applied...
    first.close()  # ...by a worker that died: its lease gone
    first = FanoutStreamConsumer(stream, FanoutWorker(client, cfg_two), name="fanout-a2", batch=7, partitions=[0])
    while first.poll().entries + second.poll().entries:
        pass
    assert state(client, cfg_two) == state(client, cfg_one)
    assert stream.lag(GROUP).backlog == 0


def test_a_worker_waits_out_a_stream_server_restart_and_goes_on(client, tmp_path):
    cfg = fresh_config()
    with EmbeddedRedis(data_dir=tmp_path / "restarting", durable=True) as server:
        stream = ValkeyStream.connect(server.url, partitions=2, timeout_s=5.0)
        stream.append([account(u) for u in (1, 7)] + [graph_event("follow", 1, 7, T0)], at_ms=T0)
        consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg))
        consumer.poll()
        build_feeds(client, cfg, [1], T0)
        applied, stop = threading.Event(), threading.Event()
        consumer.on_poll = lambda stats: stats.applied and applied.set()
        outage = threading.Event()
        said = logging.Handler()
        said.emit = lambda record: "unavailable" in record.getMessage() and outage.set()
        logging.getLogger("candidate_gen.stream_fanout").addHandler(said)
        worker = threading.Thread(target=consumer.run, args=(stop, 100, 0.05), daemon=True)
        worker.start()
        server.kill()  # a crash while the worker polls
        try:
            assert outage.wait(60), "the worker never said the stream was unavailable"
        finally:
            logging.getLogger("candidate_gen.stream_fanout").removeHandler(said)
        server.start()  # back on the same port, from its append-only file
        stream.append([post_event(300, 7, T0 + 5)], at_ms=T0 + 5)
        assert applied.wait(60), "the worker never applied the post appended after the restart"
        assert worker.is_alive()
        stop.set()
        worker.join(10)
    assert home(client, cfg, 1) == [300]


# a worker process as the CLI runs it (`python -m candidate_gen fanout-worker`): stopped by signals
SIGNALLED_CHILD = """
import sys
import redis
from candidate_gen.config import CandidateConfig
from candidate_gen.fanout import FanoutWorker
from candidate_gen.stream_fanout import FanoutStreamConsumer
from data.stream.signals import stop_on_signals
from data.stream.valkey_stream import ValkeyStream
cfg = CandidateConfig.load().with_feed(key_prefix=sys.argv[3])
feeds = redis.Redis.from_url(sys.argv[2])
consumer = FanoutStreamConsumer(ValkeyStream.connect(sys.argv[1], 3), FanoutWorker(feeds, cfg), name="fanout-child")
stop = stop_on_signals()
print("ready", flush=True)
consumer.run(stop, block_ms=100)
print("stopped", flush=True)
"""


def test_a_worker_stopped_by_sigterm_gives_its_partitions_back_at_once(client, redis_server, tmp_path):
    """What `make live` does when the play ends: SIGTERM to the workers, then new ones on the same
    partitions. Python's default for SIGTERM skipped the run loop's `finally`, leaving the leases
    held for 30 s, and the new workers stopped with PartitionTaken."""
    cfg = fresh_config()
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        stream = ValkeyStream.connect(server.url, partitions=3)
        child = subprocess.Popen([sys.executable, "-c", SIGNALLED_CHILD, server.url, redis_server.url,
                                  cfg.feed.key_prefix], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline() == "ready\n"  # it holds every partition's lease
            child.send_signal(signal.SIGTERM)
            assert child.stdout.readline() == "stopped\n" and child.wait() == 0
        finally:
            child.kill()
            child.wait()
        FanoutStreamConsumer(stream, FanoutWorker(client, cfg), name="fanout-next").close()  # no PartitionTaken
