"""The event stream against its raw ceiling, publish -> Home through the stream, engagement -> real-time
feature through the stream feature worker, and a killed archiver: nothing lost, nothing twice.

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
- **stream feature worker** (features/streaming/): the day's engagements (at most
  `--processor-events`, in event-time order, each batch appended at its last event's time) are
  appended, then one worker applies them all: its events/s against the raw XREADGROUP + XACK rate.
- **freshness**: `--workers` workers (default 2) share the partitions, each in a child process of its
  own, while a thread appends the day's events in their time order, in a loop (every log, in the
  day's mix, as the publish -> Home run does; their time rewritten to now) at `--rate` events/s,
  and an archiver lands and trims the stream every 30 s, as the Dagster sensor does. The workers
  apply the engagements among them (about 30 % of the medium day) and pass over the rest.
  `--freshness-engagements-only` replays only the engagements, each of them work: a stress run at
  ~3x the engagement rate, recorded as such. Once the workers keep up (the group's backlog, pending
  included, under 0.5 s of load, after at least 20 s of it), every 50 ms a like of a fresh post is
  appended, and the clock stops when the packed reader (`realtime_v1`) shows it counted. Workers
  that never keep up get no freshness figure: the backlog's growth per second is recorded instead.
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
from candidate_gen.stream_fanout import FanoutStreamConsumer
from data import lake
from data.contracts import LOG_TYPES
from data.days import iso_ms
from data.redis_server import EmbeddedRedis
from data.stream.archiver import StreamArchiver
from data.stream.entries import Event
from data.stream.said import graph_event, post_event
from data.stream.valkey_stream import ValkeyStream
from features.online import PackedFeatureReader
from features.store import apply, repo_config
from features.streaming import spec
from features.streaming.worker import StreamFeatureWorker
from pipelines.operations import prepare_world

# the entity each log's events are keyed by (their partition): the first of these fields the line has;
# engagements by viewer, as POST /v1/events keys them
KEY_FIELDS = {"users": ("user_id",), "posts": ("post_id",), "follows": ("follower_id", "followee_id"),
              "blocks": ("blocker_id", "blocked_id"), "engagements": ("viewer_id",), "impressions": ("viewer_id",)}


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


def _feature_store(feature_url: str, root: Path):
    from feast import FeatureStore

    store = FeatureStore(config=repo_config(str(root / "registry.db"), feature_url))
    apply(store, root / "lake")
    return store


def processor_rate(stream_url: str, feature_url: str, engagements: list[Event], partitions: int, batch: int,
                   root: Path) -> tuple[float, dict]:
    """Seconds for one stream feature worker to apply `engagements` (appended before the clock starts,
    in event-time order, each batch at its last event's time, so none is late)."""
    stream = ValkeyStream.connect(stream_url, partitions)
    timed = sorted(engagements, key=lambda e: _ts_text(e) or "")  # the world's bad lines first
    for i in range(0, len(timed), batch):
        chunk = timed[i:i + batch]
        stream.append(chunk, at_ms=max((_ms(t) for e in chunk if (t := _ts_text(e))), default=None))
    worker = StreamFeatureWorker(stream, _feature_store(feature_url, root), batch=batch,
                                 client=redis.Redis.from_url(feature_url))
    totals: Counter = Counter()
    start = time.perf_counter()
    while (stats := worker.poll()).entries:
        totals.update(entries=stats.entries, applied=stats.applied, dead_lettered=sum(stats.dead_lettered.values()),
                      rows=stats.written.rows)
    seconds = time.perf_counter() - start
    worker.close()
    return seconds, dict(totals)


def _ts_text(event: Event) -> str | None:
    """The line's time as written, if it is a JSON object with a readable one."""
    try:
        ts = json.loads(event.line).get("ts")
        _ms(ts)
        return ts
    except (ValueError, AttributeError, TypeError):
        return None


def _event_time(event: Event) -> str:
    """The line's `ts` or `created_at` as written ('' for a line without one): the contract's ISO
    times, which sort as text."""
    try:
        row = json.loads(event.line)
        return str(row.get("ts") or row.get("created_at") or "")
    except (ValueError, AttributeError):
        return ""


def _ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


WORKER_CHILD = """
import sys, threading
from pathlib import Path
import redis
from feast import FeatureStore
from data.stream.valkey_stream import ValkeyStream
from features.store import repo_config
from features.streaming.worker import StreamFeatureWorker
stream_url, partitions, feature_url, registry, owned = sys.argv[1:6]
partitions = int(partitions)
store = FeatureStore(config=repo_config(registry, feature_url))
worker = StreamFeatureWorker(ValkeyStream.connect(stream_url, partitions), store, name="bench-" + owned,
                             client=redis.Redis.from_url(feature_url), partitions=[int(p) for p in owned.split(",")])
print("ready", flush=True)
worker.run(threading.Event(), block_ms=100)
"""
ARCHIVER_CHILD = """
import sys, time
from pathlib import Path
from data.stream.archiver import StreamArchiver
from data.stream.valkey_stream import ValkeyStream
archiver = StreamArchiver(ValkeyStream.connect(sys.argv[1], int(sys.argv[2])), Path(sys.argv[3]))
while True:
    started = time.monotonic()
    archiver.archive()
    time.sleep(max(0.0, float(sys.argv[4]) - (time.monotonic() - started)))
"""
ARCHIVE_EVERY_S = 30.0  # what the Dagster sensor does on a running platform (stream_archive_sensor)
STEADY_BACKLOG_S = 0.5  # the workers keep up: less than this much of the load is waiting (pending
# included: what the workers hold in the polls they are applying)
STEADY_WAIT_S = 180.0  # how long the workers get to reach it
STEADY_MIN_S = 20.0  # ... after at least this long under the load
PROBE_TIMEOUT_S = 30.0  # a probe not counted by then is waiting behind a backlog: the run has no figure


def freshness(stream_url: str, feature_url: str, replay: list[Event], rate: int, trials: int,
              partitions: int, workers: int, root: Path) -> tuple[list[float], dict]:
    """Seconds from an engagement's append to its count in the packed reader, under `rate` events/s
    of `replay` (in its time order, in a loop), with `workers` workers in processes of their own
    sharing the partitions and the archiver running beside them. Probes start once the workers
    keep up (the group's backlog below STEADY_BACKLOG_S of load, read from the stream): steady
    state, not the catch-up after start."""
    store = _feature_store(feature_url, root)
    stream = ValkeyStream.connect(stream_url, partitions)
    templates = []  # each line split around its time, rewritten to now when appended (bad lines as they are)
    replay = sorted(replay, key=_event_time)  # the day in its order (landing files hold one log each)
    for e in replay:
        ts = _ts_text(e)
        head, _, tail = e.line.partition(json.dumps(ts)) if ts else (e.line, "", None)
        templates.append((head, tail, e.key))
    owned = [",".join(str(p) for p in range(partitions) if p % workers == w) for w in range(workers)]
    children = [subprocess.Popen([sys.executable, "-c", WORKER_CHILD, stream_url, str(partitions), feature_url,
                                  str(root / "registry.db"), parts], stdout=subprocess.PIPE, text=True)
                for parts in owned]
    # the stream's archiver lands and trims it as a running platform's sensor does: the stream (and
    # the append-only file its server rewrites now and then) holds ~ARCHIVE_EVERY_S of events, not
    # everything appended since the run began
    archiver = subprocess.Popen([sys.executable, "-c", ARCHIVER_CHILD, stream_url, str(partitions),
                                 str(root / "landing"), str(ARCHIVE_EVERY_S)])
    stop = threading.Event()
    share = sum(e.log == "engagements" for e in replay) / len(replay)
    info: dict = {"freshness_workers": workers, "freshness_engagements_per_s": round(rate * share)}
    try:
        for child in children:
            child.stdout.readline()  # each worker's own word that it holds its partitions

        def replay_at_rate() -> None:
            per_tick, t0, k = max(1, rate // 100), time.perf_counter(), 0  # 100 appends a second
            while not stop.is_set():
                i = (k * per_tick) % len(templates)
                now = iso_ms(int(time.time() * 1000))
                stream.append([Event("engagements", h if t is None else f'{h}"{now}"{t}', key)
                               for h, t, key in templates[i:i + per_tick]])
                k += 1
                time.sleep(max(0.0, t0 + k / 100 - time.perf_counter()))

        background = threading.Thread(target=replay_at_rate, daemon=True)
        background.start()
        started, steady = time.perf_counter(), rate * STEADY_BACKLOG_S
        time.sleep(STEADY_MIN_S)  # the load first: a backlog of nothing yet is not keeping up
        while stream.lag("features").backlog > steady and time.perf_counter() - started < STEADY_WAIT_S:
            time.sleep(0.5)
        info["freshness_warmup_s"] = round(time.perf_counter() - started, 1)
        info["freshness_steady"] = stream.lag("features").backlog <= steady
        if not info["freshness_steady"]:  # a probe would wait behind a backlog that keeps growing
            first, t = stream.lag("features").backlog, time.perf_counter()
            time.sleep(10.0)
            growth = (stream.lag("features").backlog - first) / (time.perf_counter() - t)
            info["freshness_backlog_growth_per_s"] = round(growth)
            info["freshness_workers_events_per_s"] = round(rate - growth)  # what the workers applied
            return [], info
        reader = PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=redis.Redis.from_url(feature_url))
        like = reader.feature_names.index("post_rt_like_5m")
        viewer, author, latencies, backlog = 2_000_000_002, 2_000_000_001, [], []
        for k in range(trials):
            post_id = 4_000_000_000 + k
            row = {"post_id": [post_id], "author_id": [author], "viewer_id": [viewer]}
            line = json.dumps({"event_id": f"probe-{k}", "viewer_id": viewer, "post_id": post_id,
                               "author_id": author, "type": "like", "value": None,
                               "ts": iso_ms(int(time.time() * 1000)), "surface": "home", "request_id": None})
            start = time.perf_counter()
            stream.append([Event("engagements", line, str(viewer))])
            while reader.read(row).values[0, like] != 1 and time.perf_counter() - start < PROBE_TIMEOUT_S:
                time.sleep(0.002)
            if reader.read(row).values[0, like] != 1:  # behind a backlog after all: no figure, say so
                info["freshness_probe_timed_out"] = k
                if latencies:  # what the probes before it saw: not the figure, which needs them all
                    info["freshness_before_timeout_p50_ms"] = ms_percentile(latencies, 50)
                    info["freshness_before_timeout_p99_ms"] = ms_percentile(latencies, 99)
                return [], info
            latencies.append(time.perf_counter() - start)
            if k % 20 == 0:
                backlog.append(stream.lag("features").backlog)
            time.sleep(0.05)
        info["freshness_backlog_max"] = max(backlog)
        info["freshness_seconds"] = round(time.perf_counter() - started, 1)
        stop.set()
        background.join(5)
    finally:
        stop.set()
        for child in [*children, archiver]:
            child.kill()
            child.wait()
    return latencies, info


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
    parser.add_argument("--workers", type=int, default=2, help="stream feature workers sharing the partitions "
                        "in the freshness run")
    parser.add_argument("--freshness-engagements-only", action="store_true",
                        help="the freshness run replays only the day's engagements (a stress run), not every log")
    parser.add_argument("--processor-events", type=int, default=200_000,
                        help="engagements the stream feature worker's rate is measured on")
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
        engagements = [e for e in events if e.log == "engagements"]
        with EmbeddedRedis(data_dir=tmp / "processor", durable=True) as server, EmbeddedRedis() as features:
            processor_s, processed = processor_rate(server.url, features.url, engagements[:args.processor_events],
                                                    args.partitions, args.batch, tmp / "feast-rate")
        with EmbeddedRedis(data_dir=tmp / "fresh", durable=True) as server, EmbeddedRedis() as features:
            replay = engagements if args.freshness_engagements_only else events
            fresh, fresh_info = freshness(server.url, features.url, replay, args.rate, args.trials,
                                          args.partitions, args.workers, tmp / "feast-fresh")
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
        "freshness_replay": "engagements" if args.freshness_engagements_only else "every log",
        "freshness_p50_ms": ms_percentile(fresh, 50) if fresh else None,  # None: the workers fell behind
        "freshness_p99_ms": ms_percentile(fresh, 99) if fresh else None,
        "freshness_trials": len(fresh),
        **fresh_info,
        "processor_events": processed.get("entries", 0),
        "processor_applied": processed.get("applied", 0),
        "processor_dead_lettered": processed.get("dead_lettered", 0),
        "processor_rows_written": processed.get("rows", 0),
        "processor_events_per_s": round(processed.get("entries", 0) / processor_s),  # one worker
        "processor_ratio_to_read_ceiling": round(processed.get("entries", 0) / processor_s
                                                 / (len(events) / ceiling_read_s), 3),
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
