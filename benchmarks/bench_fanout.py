"""Fan-out throughput vs raw pipelined ZADD, the cost of a celebrity post, and Home read latency.

    uv run python -m benchmarks.bench_fanout [--world medium] [--days 2] [--reads 3000] [--cluster]

On the medium world (one embedded Valkey, fresh; `--cluster`: a three-primary Valkey cluster on
loopback, results in fanout_cluster.json): the candidate state is rebuilt from the lake up
to the day before the last `--days` days, then the fan-out worker applies those days (every event:
accounts, graph, posts, deletions; the lake read is excluded from the timing). The ceiling is the
same volume of (viewer, post) inserts as raw pipelined ZADDs, one per insert, to the same server in
the same run. Home reads: 1,000 candidates requested for the viewers with the largest Home
candidate sets (the 300 accounts following the most; their caches rebuilt with a cap of 1,000),
repeated in turn.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import redis

from benchmarks.common import PeakRss, write_result
from benchmarks.workspace import bench_settings, ensure_lake
from candidate_gen import events as ev
from candidate_gen.config import CandidateConfig
from candidate_gen.fanout import FanoutStats, FanoutWorker
from candidate_gen.home import HomeCandidateReader
from candidate_gen.keys import Keys
from candidate_gen.rebuild import build_feeds, rebuild_all
from candidate_gen.records import member
from data.days import day_end_ms
from data.redis_client import connect
from data.redis_cluster import EmbeddedCluster
from data.redis_server import EmbeddedRedis


def ceiling_inserts(client: redis.Redis, cfg: CandidateConfig, day_events, celebs: set[int],
                    batch: int) -> tuple[int, float]:
    """The (viewer, post) pairs the worker wrote — followers with a cache — as plain ZADDs."""
    keys = cfg.keys
    posts = day_events[day_events["kind"] == "post"]
    posts = posts[~posts["b"].isin(list(celebs))]
    pipe = client.pipeline(transaction=False)
    for a in posts["b"].unique():
        pipe.smembers(keys.followers(int(a)))
    followers = dict(zip(posts["b"].unique().tolist(), pipe.execute(), strict=True))
    viewers = sorted({v for f in followers.values() for v in f})
    pipe = client.pipeline(transaction=False)
    for v in viewers:
        pipe.exists(keys.feed(int(v)))
    cached = {v for v, e in zip(viewers, pipe.execute(), strict=True) if e}
    ceiling = Keys(prefix="ceil:")  # the same feed keys in a namespace of their own
    pairs = [(ceiling.feed(int(v)).encode(), member(int(p), int(a)), float(s))
             for p, a, s in zip(posts["a"], posts["b"], posts["x"], strict=True)
             for v in followers[a] if v in cached]
    start = time.perf_counter()
    for i in range(0, len(pairs), batch):
        pipe = client.pipeline(transaction=False)
        for key, m, s in pairs[i : i + batch]:
            pipe.zadd(key, {m: s})
        pipe.execute()
    return len(pairs), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="medium")
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--cluster", action="store_true", help="on a three-primary cluster")
    args = parser.parse_args()
    settings = bench_settings(args.world)
    world = ensure_lake(settings)
    days = world["days"]
    base_day, run_days = days[-args.days - 1], days[-args.days :]
    cfg = CandidateConfig.load()
    result: dict = {"world": args.world, "redis": "cluster of 3 primaries" if args.cluster else "one server",
                    "rebuilt_through": base_day, "fanout_days": run_days,
                    "batch_events": cfg.fanout.batch_events, "cap": cfg.feed.cap}

    with EmbeddedCluster(3) if args.cluster else EmbeddedRedis() as server, PeakRss() as rss:
        client = connect(server.url)
        print(f"rebuild through {base_day} ...", flush=True)
        result["rebuild"] = rebuild_all(settings.lake_dir, base_day, client, cfg)
        print(f"  {result['rebuild']}", flush=True)

        worker = FanoutWorker(client, cfg)
        total, seconds, ceiling_n, ceiling_s = FanoutStats(), 0.0, 0, 0.0
        for day in run_days:
            events = ev.lake_day(settings.lake_dir, day)
            start = time.perf_counter()
            stats = worker.consume(events, day)
            seconds += time.perf_counter() - start
            total.add(stats)
            n, s = ceiling_inserts(client, cfg, events, worker.celebs, batch=cfg.fanout.batch_events)
            ceiling_n, ceiling_s = ceiling_n + n, ceiling_s + s
            print(f"  {day}: {stats.as_metadata()}; ceiling {n} ZADDs in {s:.2f}s", flush=True)
        result["fanout"] = total.as_metadata() | {"seconds": round(seconds, 2)}
        result["inserts_per_s"] = round(total.inserts / seconds)
        result["ceiling_inserts"] = ceiling_n
        result["ceiling_inserts_per_s"] = round(ceiling_n / ceiling_s)
        result["ratio_to_ceiling"] = round(result["inserts_per_s"] / result["ceiling_inserts_per_s"], 3)
        result["celebrities"] = len(worker.celebs)
        result["celebrity_posts"] = total.celebrity_posts
        # writes per celebrity post, whatever its follower count (an add and two trims)
        result["celebrity_post_writes"] = round(total.celebrity_post_commands / max(total.celebrity_posts, 1), 2)
        counts = [client.scard(cfg.keys.followers(a)) for a in worker.celebs]
        result["celebrity_followers_median"] = int(statistics.median(counts)) if counts else 0
        non_celebrity_posts = max(total.posts - total.celebrity_posts, 1)
        result["non_celebrity_post_writes_mean"] = round(total.fanout_targets / non_celebrity_posts, 1)

        # Home reads of 1,000 candidates: the heaviest followers' caches, rebuilt with a cap of
        # 1,000 (the default keeps 500; the celebrity pulls come on top)
        now = day_end_ms(run_days[-1])
        read_cfg = cfg.with_feed(cap=1000)
        reader = HomeCandidateReader(client, read_cfg)
        users = sorted(worker.users)
        pipe = client.pipeline(transaction=False)
        for u in users:
            pipe.scard(cfg.keys.following(u))
        following = dict(zip(users, pipe.execute(), strict=True))
        heavy = sorted(following, key=following.get, reverse=True)[:300]
        build_feeds(client, read_cfg, heavy, now)
        sizes = {v: len(reader.read(v, now, 1000).candidates) for v in heavy}
        lat = []
        for _ in range(max(args.reads // len(heavy), 1)):
            for v in heavy:
                start = time.perf_counter()
                reader.read(v, now, 1000)
                lat.append((time.perf_counter() - start) * 1000)
        got = [sizes[v] for v in heavy]
        result["home_read_viewers"] = len(heavy)
        result["home_read_candidates_mean"] = round(float(np.mean(got)), 1)
        result["home_read_candidates_min"] = int(min(got))
        result["home_read_p50_ms"] = round(float(np.percentile(lat, 50)), 3)
        result["home_read_p99_ms"] = round(float(np.percentile(lat, 99)), 3)
        result["home_reads"] = len(lat)
        memory = client.info("memory", target_nodes=client.PRIMARIES) if args.cluster else {"": client.info("memory")}
        result["redis_used_memory_mb"] = round(sum(m["used_memory"] for m in memory.values()) / 2**20, 1)
    result["peak_rss_mb"] = rss.peak_mb
    path = write_result("fanout_cluster" if args.cluster else "fanout", result)
    print({k: v for k, v in result.items() if k not in ("rebuild", "fanout")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
