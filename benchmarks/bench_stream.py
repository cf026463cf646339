"""The event stream against its raw ceiling, publish -> Home through the stream, and a killed
archiver: nothing lost, nothing twice.

    uv run python -m benchmarks.bench_stream [--world medium] [--events 0] [--rate 5000] [--trials 200]

The world's last landing day (every log) is replayed into the stream; the lines are read and keyed
before any clock starts. All of it runs on fresh embedded Valkey servers, in one run:
- **ceiling**: the same events with raw pipelined `XADD` (batches of `--batch`) into the same
  partition keys, then `XREADGROUP` + `XACK` until all are read. Same durable server config.
- **end to end**: `ValkeyStream.append` (durable: `WAITAOF` per batch), then the archiver lands
  every event in the landing folder (files fsynced, marks committed, stream trimmed). This is the
  stream's path to the lake, and its only consumer of every log today.
- **publish -> Home**: while a thread appends the replayed day at `--rate` events/s, a post is
  published onto the stream every 50 ms (`--trials` times). The fan-out worker consumes the stream
  in a thread of its own, and the clock stops when the post shows in a follower's Home read
  (`HomeCandidateReader`, polled).
- **killed archiver**: an archiver in a child process is `kill -9`ed once it has committed its
  third batch. A fresh one then finishes, and the archived lines are compared with the appended
  ones: `lost` and `double_counted`.

Freshness (event -> feature visible to the packed reader) needs the streaming feature processor,
which is not built yet: those fields are null.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import redis

from benchmarks.common import ms_percentile, write_result
from benchmarks.workspace import bench_settings
from candidate_gen.config import CandidateConfig
from candidate_gen.fanout import FanoutWorker
from candidate_gen.home import HomeCandidateReader
from candidate_gen.rebuild import build_feeds
from candidate_gen.stream_events import graph_event, post_event
from candidate_gen.stream_fanout import FanoutStreamConsumer
from data import lake
from data.contracts import LOG_TYPES
from data.days import iso_ms
from data.redis_server import EmbeddedRedis
from data.stream.archiver import StreamArchiver
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from pipelines.operations import prepare_world

# the entity each log's events are keyed by (their partition): the first of these fields the line has
KEY_FIELDS = {"users": ("user_id",), "posts": ("post_id",), "follows": ("follower_id", "followee_id"),
              "blocks": ("blocker_id", "blocked_id"), "engagements": ("post_id",), "impressions": ("viewer_id",)}


def day_events(landing: Path, day: str, limit: int) -> list[Event]:
    events = []
    for log in LOG_TYPES:
        for path in lake.landing_files(landing, log, day):
            if not path.name.endswith(".jsonl"):
                continue
            for line in path.read_text(errors="replace").splitlines():
                try:
                    row = json.loads(line)
                    key = ":".join(str(row[f]) for f in KEY_FIELDS[log])
                except (ValueError, KeyError, TypeError):
                    key = line  # the world's deliberately bad lines: keyed by themselves
                events.append(Event(log, line, key))
    return events[:limit] if limit else events


def ceiling(url: str, events: list[Event], partitions: int, batch: int) -> tuple[float, float]:
    """Raw XADD, then XREADGROUP + XACK, of the same events into the same partition keys; the
    seconds of each."""
    client = redis.Redis.from_url(url, decode_responses=True)
    keys = [f"ceiling:{{{p}}}" for p in range(partitions)]
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        pipe = client.pipeline(transaction=False)
        for e in events[i:i + batch]:
            pipe.xadd(keys[zlib.crc32(e.key.encode()) % partitions], {"log": e.log, "line": e.line})
        pipe.execute()
    appended = time.perf_counter()
    for key in keys:
        client.xgroup_create(key, "g", id="0", mkstream=True)
    read = 0
    while read < len(events):
        reply = client.xreadgroup("g", "c", {k: ">" for k in keys}, count=batch)
        pipe = client.pipeline(transaction=False)
        for key, items in reply:
            pipe.xack(key, "g", *[entry_id for entry_id, _ in items])
            read += len(items)
        pipe.execute()
    read_s = time.perf_counter() - appended
    client.delete(*keys)
    return appended - start, read_s


def end_to_end(url: str, events: list[Event], partitions: int, batch: int, landing: Path) -> tuple[float, float]:
    stream = ValkeyStream.connect(url, partitions)
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        stream.append(events[i:i + batch])
    appended = time.perf_counter()
    report = StreamArchiver(stream, landing, batch=batch).archive()
    archived = time.perf_counter()
    assert report.entries == len(events), (report.entries, len(events))
    return appended - start, archived - appended


def publish_to_home(stream_url: str, feed_url: str, replay: list[Event], rate: int, trials: int,
                    partitions: int) -> list[float]:
    """Seconds from a post's append to its showing in a follower's Home read, under `rate` events/s."""
    feeds = redis.Redis.from_url(feed_url)
    cfg = CandidateConfig.load().with_feed(key_prefix="bench:")
    stream = ValkeyStream.connect(stream_url, partitions)
    author, follower, now = 2_000_000_001, 2_000_000_002, int(time.time() * 1000)
    accounts = [Event("users", json.dumps({"user_id": u, "created_at": iso_ms(now - 60_000),
                                           "updated_at": iso_ms(now - 60_000), "is_private": False,
                                           "is_verified": False, "country": "FR"}), str(u))
                for u in (author, follower)]
    consumer = FanoutStreamConsumer(stream, FanoutWorker(feeds, cfg, name="bench"), reclaim_idle_ms=60_000)
    stream.append([*accounts, graph_event("follow", follower, author, now - 30_000)])
    while consumer.poll().entries:  # the accounts, the follow and anything before them
        pass
    build_feeds(feeds, cfg, [follower], now)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop, 100), daemon=True)
    worker.start()

    def replay_at_rate() -> None:
        per_tick, t0 = max(1, rate // 100), time.perf_counter()  # 100 appends a second
        for k, i in enumerate(range(0, len(replay), per_tick)):
            if stop.is_set():
                return
            stream.append(replay[i:i + per_tick])
            time.sleep(max(0.0, t0 + (k + 1) / 100 - time.perf_counter()))

    background = threading.Thread(target=replay_at_rate, daemon=True)
    background.start()
    reader, latencies = HomeCandidateReader(feeds, cfg), []
    for k in range(trials):
        post_id, created = 3_000_000_000 + k, int(time.time() * 1000)
        start = time.perf_counter()
        stream.append([post_event(post_id, author, created)], at_ms=created)
        while post_id not in {c.post_id for c in reader.read(follower, int(time.time() * 1000) + 1, 50).candidates}:
            time.sleep(0.0005)
        latencies.append(time.perf_counter() - start)
        time.sleep(0.05)
    stop.set()
    worker.join(5)
    background.join(5)
    return latencies


CHILD = """
import sys
from pathlib import Path
from data.stream.archiver import StreamArchiver
from data.stream.valkey_stream import ValkeyStream
def said(step):
    if step == "committed":
        print("committed", flush=True)
StreamArchiver(ValkeyStream.connect(sys.argv[1], int(sys.argv[2])), Path(sys.argv[3]), batch=int(sys.argv[4]),
               on_step=said).archive()
"""


def killed_archiver(url: str, events: list[Event], partitions: int, landing: Path) -> tuple[int, int]:
    """kill -9 an archiver after its third commit, finish with a fresh one; (lost, double_counted)."""
    stream = ValkeyStream.connect(url, partitions)
    stream.append(events)
    batch = max(1, len(events) // (partitions * 8))
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(partitions), str(landing), str(batch)],
                             stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        child.stdout.readline()  # the child's own word that a batch committed: no timing guesses
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    stream.client.delete(f"{stream.prefix}:archiver")  # its lease, lapsed at once instead of in LEASE_S
    StreamArchiver(stream, landing, batch=batch).archive()
    sent = Counter(e.line for e in events)
    landed = Counter(line for f in landing.glob("*/*/stream-*.jsonl") for line in f.read_text().splitlines())
    lost = sum((sent - landed).values())
    double = sum((landed - sent).values())
    return lost, double


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="medium")
    parser.add_argument("--events", type=int, default=0, help="replay at most this many (0: the whole day)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()

    settings = bench_settings(args.world)
    world = prepare_world(settings)  # its landing files only: nothing of it is ingested here
    day = world["days"][-1]
    events = day_events(settings.landing_dir, day, args.events)
    print(f"{len(events):,} events of {args.world}'s {day}", flush=True)
    result: dict = {"world": args.world, "day": day, "events": len(events), "partitions": args.partitions,
                    "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="loupe-bench-stream-") as tmp:
        tmp = Path(tmp)
        with EmbeddedRedis(data_dir=tmp / "ceiling", durable=True) as server:
            ceiling_append_s, ceiling_read_s = ceiling(server.url, events, args.partitions, args.batch)
        ceiling_s = ceiling_append_s + ceiling_read_s
        with EmbeddedRedis(data_dir=tmp / "stream", durable=True) as server:
            append_s, archive_s = end_to_end(server.url, events, args.partitions, args.batch, tmp / "landing")
        with EmbeddedRedis(data_dir=tmp / "live", durable=True) as server, EmbeddedRedis() as feeds:
            latencies = publish_to_home(server.url, feeds.url, events, args.rate, args.trials, args.partitions)
        with EmbeddedRedis(data_dir=tmp / "kill", durable=True) as server:
            sample = events[: min(len(events), 200_000)]
            lost, double = killed_archiver(server.url, sample, args.partitions, tmp / "killed")
    e2e_s = append_s + archive_s
    result.update({
        "events_per_s": round(len(events) / e2e_s),
        "append_events_per_s": round(len(events) / append_s),
        "archive_events_per_s": round(len(events) / archive_s),
        "ceiling_events_per_s": round(len(events) / ceiling_s),
        "ceiling_append_events_per_s": round(len(events) / ceiling_append_s),  # raw XADD alone
        "ceiling_read_events_per_s": round(len(events) / ceiling_read_s),  # raw XREADGROUP + XACK alone
        "ratio_to_ceiling": round(ceiling_s / e2e_s, 3),
        "sustained_rate": args.rate,
        "freshness_p50_ms": None,  # the streaming feature processor is not built yet
        "freshness_p99_ms": None,
        "publish_to_home_p50_ms": ms_percentile(latencies, 50),
        "publish_to_home_p99_ms": ms_percentile(latencies, 99),
        "publish_trials": len(latencies),
        "killed_archiver_events": len(sample),
        "lost": lost,
        "double_counted": double,
    })
    write_result("stream", {"what": __doc__.split("\n\n")[0], **result})


if __name__ == "__main__":
    main()
