"""The event stream on a real Valkey server, and (the tests taking `server`) the same on a real
three-primary Valkey cluster: what an appended event survives, consumer groups and reclaiming a dead
consumer's entries, and the archiver landing every entry exactly once across crashes, trimming only
what it archived and no group still needs (docs/event_stream.md). The cluster's own part (reads
across nodes, durability per node): test_event_stream_cluster.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from data.redis_server import EmbeddedRedis
from data.stream.archiver import ArchiverBusy, StreamArchiver, entries_of
from data.stream.backlog import StreamBacklogCollector, growing
from data.stream.entries import Entry, Event, next_id, parse_id
from data.stream.leases import PartitionLeases, PartitionTaken
from data.stream.valkey_stream import NotDurable, StreamLayoutError, ValkeyStream

pytestmark = pytest.mark.integration  # a durable Valkey server of its own, or the session's AOF cluster


@pytest.fixture
def one_server(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as s:
        yield s


@pytest.fixture(params=["server", "cluster"])
def server(request, tmp_path):
    """Where the stream lives (`.url`): a durable server of the test's own, or the session's
    three-primary cluster with append-only files, emptied first."""
    if request.param == "server":
        yield request.getfixturevalue("one_server")
        return
    yield request.getfixturevalue("empty_cluster_aof")


def events(n: int, log: str = "engagements", keys: int = 5) -> list[Event]:
    return [Event(log, json.dumps({"event_id": f"{log}-{i}", "post_id": i % keys}), str(i % keys))
            for i in range(n)]


def everything(stream: ValkeyStream) -> list[Entry]:
    return [e for p in range(stream.partitions) for e in stream.after(p, "0-0", 10**6)]


def archived_lines(landing: Path) -> Counter:
    return Counter(line for f in landing.glob("*/*/stream-*.jsonl") for line in f.read_text().splitlines())


def test_ids_compare_as_numbers_and_name_the_arrival_day():
    assert parse_id("1733250000123-10") > parse_id("1733250000123-9")
    assert next_id("5-9") == "5-10"
    assert Entry(0, "1790899199999-0", "posts", "{}").day == "2026-10-01"
    assert Entry(0, "1790899200000-0", "posts", "{}").day == "2026-10-02"
    with pytest.raises(ValueError, match="unknown log"):
        Event("clicks", "{}", "1")
    with pytest.raises(ValueError, match="no line break"):
        Event("posts", "{}\n{}", "1")


def test_a_server_without_an_append_only_file_is_refused(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path / "plain") as plain, pytest.raises(NotDurable, match="appendonly"):
        ValkeyStream.connect(plain.url)


def test_another_partition_count_is_refused(server):
    ValkeyStream.connect(server.url, partitions=4)
    with pytest.raises(StreamLayoutError, match="4 partitions"):
        ValkeyStream.connect(server.url, partitions=8)


def test_an_appended_event_survives_a_server_crash(one_server):
    server = one_server
    stream = ValkeyStream.connect(server.url, partitions=3)
    sent = events(500)
    ids = stream.append(sent)
    server.kill()  # SIGKILL: no shutdown save; only the fsynced append-only file is left
    server.start()
    stream = ValkeyStream.connect(server.url, partitions=3)
    after = everything(stream)
    assert sorted(e.id for e in after) == sorted(ids)
    assert Counter(e.line for e in after) == Counter(e.line for e in sent)


def test_the_events_of_one_entity_share_a_partition_in_append_order(server):
    stream = ValkeyStream.connect(server.url, partitions=4)
    stream.append(events(200, keys=7))
    by_key: dict[str, set[int]] = {}
    for entry in everything(stream):
        by_key.setdefault(str(json.loads(entry.line)["post_id"]), set()).add(entry.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    for p in range(stream.partitions):
        ids = [parse_id(e.id) for e in stream.after(p, "0-0", 1000)]
        assert ids == sorted(ids)


def test_a_dead_consumers_entries_are_reclaimed_nothing_lost_nothing_twice(server):
    stream = ValkeyStream.connect(server.url, partitions=2)
    stream.create_group("features")
    ids = stream.append(events(100))
    dead = stream.read("features", "worker-1", count=10)  # delivered, then the worker dies: never acked
    assert dead and stream.lag("features").pending == len(dead)
    applied = []
    while batch := stream.read("features", "worker-2", count=25):
        applied += batch
        stream.ack("features", batch)
    assert stream.lag("features").backlog == len(dead)  # only the dead worker's entries are left
    reclaimed = stream.reclaim("features", "worker-2", min_idle_ms=0)
    assert sorted(e.id for e in reclaimed) == sorted(e.id for e in dead)
    applied += reclaimed
    stream.ack("features", reclaimed)
    assert Counter(e.id for e in applied) == Counter(ids)  # each entry applied exactly once
    assert stream.lag("features").backlog == 0


def test_the_archiver_lands_every_entry_once_in_its_arrival_day_and_trims_it(server, tmp_path):
    stream = ValkeyStream.connect(server.url, partitions=3)
    sent = events(120) + events(40, log="impressions") + events(7, log="posts")
    ids = stream.append(sent, at_ms=1_790_899_199_000)  # one second before 2026-10-02: one day
    landing = tmp_path / "landing"
    report = StreamArchiver(stream, landing, batch=16).archive()
    assert report.entries == len(sent) and report.trimmed == len(sent) and stream.length() == 0
    assert archived_lines(landing) == Counter(e.line for e in sent)
    day = Entry(0, ids[0], "posts", "").day
    for log, n in (("engagements", 120), ("impressions", 40), ("posts", 7)):
        files = list((landing / log / day).glob("stream-*.jsonl"))
        assert sum(len(f.read_text().splitlines()) for f in files) == n
        assert report.lines[f"{log}/{day}"] == n
    # the file names hold each batch's entry range: no two batches of a partition overlap
    batches = {(f.name.split("-")[1], entries_of(f)) for f in landing.glob("*/*/stream-*.jsonl")}
    ranges = sorted((p, parse_id(first), parse_id(last)) for p, (first, last) in batches)
    for (p1, _, last), (p2, first, _) in zip(ranges, ranges[1:], strict=False):
        assert p1 != p2 or last < first
    assert not list((landing / "_stream" / "staging").glob("*/*/*"))


def test_trimming_keeps_what_a_consumer_group_still_needs(server, tmp_path):
    stream = ValkeyStream.connect(server.url, partitions=1)
    stream.create_group("features")
    ids = stream.append(events(30))
    pending = stream.read("features", "w", count=10)  # delivered, not yet applied
    archiver = StreamArchiver(stream, tmp_path / "landing")
    archiver.archive()
    assert [e.id for e in everything(stream)] == ids  # the group still needs all 30 (10 pending)
    stream.ack("features", pending)
    archiver.archive()
    assert [e.id for e in everything(stream)] == ids[10:]  # 20 never delivered yet
    rest = stream.read("features", "w", count=100)
    stream.ack("features", rest)
    archiver.archive()
    assert stream.length() == 0
    assert archived_lines(tmp_path / "landing") == Counter(e.line for e in events(30))  # still once each


def test_trimming_when_pending_entries_are_acknowledged_while_it_looks(server, tmp_path):
    """A consumer acknowledges its pending entries between the trim's listing of the groups and its
    look at what is pending (a race seen under load: the archiver died on it)."""
    stream = ValkeyStream.connect(server.url, partitions=1)
    stream.create_group("features")
    ids = stream.append(events(30))
    pending = stream.read("features", "w", count=10)
    listed = stream._groups

    def listed_then_acknowledged(key: str) -> list[dict]:
        groups = listed(key)
        stream.ack("features", pending)
        return groups

    stream._groups = listed_then_acknowledged
    StreamArchiver(stream, tmp_path / "landing").archive()
    assert [e.id for e in everything(stream)] == ids[10:]  # what the group was delivered is done; the rest kept


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_after", ["staged", "committed", "published"])
def test_an_archiver_crash_at_any_step_loses_nothing_and_lands_nothing_twice(server, tmp_path, crash_after):
    stream = ValkeyStream.connect(server.url, partitions=2)
    sent = events(60) + events(20, log="follows")
    stream.append(sent)
    landing = tmp_path / "landing"

    def crash(step: str) -> None:
        if step == crash_after:
            raise Crash(step)

    with pytest.raises(Crash):
        StreamArchiver(stream, landing, batch=25, on_step=crash).archive()
    StreamArchiver(stream, landing, batch=25).archive()  # a new process: recovers, then goes on
    assert archived_lines(landing) == Counter(e.line for e in sent)
    assert sum(StreamArchiver(stream, landing).archived_lines().values()) == len(sent)
    assert stream.length() == 0


def test_lag_of_a_partition_nothing_was_appended_to(server):
    stream = ValkeyStream.connect(server.url, partitions=4)
    assert stream.groups() == [] and stream.lag("features").backlog == 0
    stream.create_group("features")
    assert stream.groups() == ["features"]


def test_ids_follow_the_producers_clock_and_never_go_back_within_a_partition(server):
    stream = ValkeyStream.connect(server.url, partitions=1)
    sent = events(10)
    ids = stream.append(sent, at_ms=1_790_899_200_000)  # 2026-10-02T00:00Z, a simulated clock
    assert {parse_id(i)[0] for i in ids} == {1_790_899_200_000}
    by_id = {e.id: e.line for e in everything(stream)}
    assert [by_id[i] for i in ids] == [e.line for e in sent]  # ids in the order of the events given
    behind = stream.append(events(4), at_ms=1_790_899_100_000)  # another producer's clock, behind
    assert [parse_id(i) for i in behind] == [(1_790_899_200_000, 10 + k) for k in range(4)]
    ahead = stream.append(events(1), at_ms=1_790_899_300_000)
    assert parse_id(ahead[0]) == (1_790_899_300_000, 0)


def test_backlog_gauges_are_read_at_each_scrape_and_growth_needs_every_tick_to_rise(server):
    stream = ValkeyStream.connect(server.url, partitions=2)
    stream.create_group("fanout")
    stream.append(events(7))
    stream.read("fanout", "w", count=2)  # delivered, not acknowledged
    registry = CollectorRegistry()
    registry.register(StreamBacklogCollector(stream))
    pending = registry.get_sample_value("loupe_stream_backlog", {"group": "fanout", "state": "pending"})
    undelivered = registry.get_sample_value("loupe_stream_backlog", {"group": "fanout", "state": "undelivered"})
    assert registry.get_sample_value("loupe_stream_entries") == 7 and pending + undelivered == 7 and pending > 0
    stream.append(events(3))
    assert registry.get_sample_value("loupe_stream_entries") == 10  # not a stale value
    assert growing([1, 2, 3, 4, 5, 6], ticks=5) and not growing([1, 2, 3, 3, 5, 6], ticks=5)
    assert not growing([1, 2, 3], ticks=5)


ARCHIVER_PROCESS = """
import sys
from pathlib import Path
from data.stream.archiver import StreamArchiver
from data.stream.valkey_stream import ValkeyStream
def said(step):
    print(step, flush=True)
    if step == "committed":
        sys.stdin.readline()  # held here, between its commit and moving the files in, until killed
StreamArchiver(ValkeyStream.connect(sys.argv[1], 2), Path(sys.argv[2]), batch=10, on_step=said).archive()
"""


def test_an_archiver_killed_by_sigkill_mid_commit_loses_nothing_and_lands_nothing_twice(one_server, tmp_path):
    server = one_server
    stream = ValkeyStream.connect(server.url, partitions=2)
    sent = events(95)
    stream.append(sent)
    landing = tmp_path / "landing"
    child = subprocess.Popen([sys.executable, "-c", ARCHIVER_PROCESS, server.url, str(landing)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    commits = 0
    while commits < 3:  # two whole batches, then held right after the third one's commit
        if child.stdout.readline().strip() == "committed":
            commits += 1
            if commits < 3:
                child.stdin.write("\n")  # go on
                child.stdin.flush()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert archived_lines(landing) != Counter(e.line for e in sent)  # it died part-way
    with pytest.raises(ArchiverBusy):  # its lease still holds
        StreamArchiver(stream, landing).archive()
    stream.client.delete("loupe:events:archiver")  # the lease lapsing (LEASE_S later), at once
    StreamArchiver(stream, landing).archive()
    assert archived_lines(landing) == Counter(e.line for e in sent)
    assert stream.length() == 0


def test_one_archiver_at_a_time(server, tmp_path):
    stream = ValkeyStream.connect(server.url, partitions=2)
    stream.append(events(10))
    held = stream.client.lock("loupe:events:archiver", timeout=60)
    assert held.acquire()
    with pytest.raises(ArchiverBusy, match="another archiver"):
        StreamArchiver(stream, tmp_path / "landing").archive()
    assert not archived_lines(tmp_path / "landing") and stream.length() == 10
    held.release()
    assert StreamArchiver(stream, tmp_path / "landing").archive().entries == 10


def test_append_new_appends_an_event_id_once_until_its_marker_expires(server):
    """A producer retrying a batch (no answer the first time) appends only what is missing."""
    stream = ValkeyStream.connect(server.url, partitions=2)
    batch = events(4)
    ids = [json.loads(e.line)["event_id"] for e in batch]

    first = stream.append_new(batch[:2], ids[:2], ttl_ms=60_000, at_ms=1_790_000_000_000)
    again = stream.append_new(batch + batch[3:], ids + ids[3:], ttl_ms=60_000, at_ms=1_790_000_000_000)

    assert all(first) and again[:2] == [None, None] and all(again[2:4]) and again[4] is None
    assert Counter(e.line for e in everything(stream)) == Counter(e.line for e in batch)
    assert all(parse_id(i)[0] == 1_790_000_000_000 for i in first + again[2:4])
    marker = stream.marker_key(stream.partition_of(batch[0].key), ids[0])
    assert stream.client.get(marker) == first[0] and 0 < stream.client.pttl(marker) <= 60_000
    stream.client.delete(marker)  # as its ttl would: the id may come again
    assert stream.append_new(batch[:1], ids[:1], ttl_ms=60_000)[0] is not None


def test_lag_after_a_deletion_is_read_in_constant_time_as_an_upper_bound(server):
    """XINFO gives no lag once an entry past a group's place is deleted: the backlog gauges then
    take entries added minus entries read, not a scan of the whole backlog."""
    stream = ValkeyStream.connect(server.url, partitions=1)
    ids = stream.append(events(10, keys=1))
    stream.create_group("g")
    stream.read("g", "c", count=3)
    stream.client.xdel(stream.key(0), ids[5])
    assert stream._groups(stream.key(0))[0]["lag"] is None
    assert stream.lag("g").undelivered == 7 and stream.lag("g").pending == 3  # 6 left, 1 of 7 deleted


def test_a_partition_has_one_owner_per_group_until_it_gives_it_back(server):
    stream = ValkeyStream.connect(server.url, partitions=4)
    first = PartitionLeases(stream, "g", [0, 1, 2, 3], "worker")
    with pytest.raises(PartitionTaken, match="partition 2"):
        PartitionLeases(stream, "g", [2], "worker")
    first.hold()
    PartitionLeases(stream, "other", [2], "worker").release()  # another group's partitions are its own
    first.release()
    PartitionLeases(stream, "g", [2], "worker").release()
