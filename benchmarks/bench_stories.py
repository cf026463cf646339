"""The Stories tray on the medium world (the tiny one when the medium lake is absent): whether an
expired story is ever served, checked against the lake's own record of each story, and the tray's
latency in-process and through the HTTP app, against a naive tray (one round trip per followee,
each reading the account's whole story set), same run.

Setup (timed, not compared): the social graph (accounts, follows, blocks, mutes) replayed from the
lake into an embedded Valkey of the benchmark's own by the fan-out worker (no feed caches), and the
stories live at the last day's end loaded from the lake (`candidates/stories`' own function).

Expiry: trays for random viewers at clock times stepped from 12 h before the last day's end to 26 h
after it, so every loaded story passes its 24 h mark during the run; each served story is judged by
the lake's created_at (never the response's): served at or after created + 24 h, or before created,
is an expired serve. Then at the edge: for sampled stories, a follower's tray at created + 24 h − 1
ms must hold the story, at created + 24 h must not.

    python -m benchmarks.bench_stories [--trays 2000] [--http 500] [--edges 300] [--world medium|tiny]
        -> benchmarks/results/stories.json (and its figures as the `stories` section of controls.json)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np
import redis

from benchmarks.bench_search import percentiles
from benchmarks.common import RESULTS_DIR, PeakRss, stopwatch, write_result
from benchmarks.workspace import add_world_argument, chosen_world, ensure_lake
from candidate_gen import events as ev
from candidate_gen import stories
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import story_chain
from candidate_gen.filters.base import ids
from candidate_gen.rebuild import lake_days
from data import columns as c
from data.clock import Clock
from data.columns import STORY_TTL_MS
from data.days import day_end_ms
from data.lake import partition_days
from data.redis_server import EmbeddedRedis
from serving.config import ServingConfig
from serving.stories.story_tray import StoryTray

HOUR_MS = 3_600_000


class FrozenClock(Clock):
    """The clock the benchmark sets: trays are asked at chosen moments, not at the wall clock's."""

    def __init__(self, now_ms: int):
        super().__init__(now_ms)
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


def naive_tray(client, keys, chain, viewer: int, now: int, limit: int) -> list[int]:
    """The naive path: the followees, then one round trip per followee reading its whole story set,
    live and unseen kept in Python, the same filters, newest first."""
    following = ids(client.smembers(keys.following(viewer))).tolist()
    seen = set(ids(client.smembers(keys.stories_seen(viewer))).tolist())
    newest = {}
    for author in following:
        live = [(int(s), int(t)) for s, t in client.zrange(keys.stories(author), 0, -1, withscores=True)
                if stories.is_live(int(t), now) and int(s) not in seen]
        if live:
            newest[author] = max(t for _, t in live)
    if not newest:
        return []
    from candidate_gen.block import CandidateBlock

    authors = list(newest)
    kept = chain.run(viewer, CandidateBlock.build(authors, authors, [newest[a] for a in authors], "stories", 0.0),
                     now).kept.author.tolist()
    return sorted(kept, key=lambda a: -newest[a])[:limit]


def through_http(client, cfg: ServingConfig, cands, now_ms: int, viewers: list[int]) -> list[float]:
    """The same trays through the service's HTTP app (BentoML's ASGI app in-process, a Starlette test
    client: validation, the API guard, JSON both ways); no feature store or registry needed."""
    from starlette.testclient import TestClient

    from serving.app import RankingApp
    from serving.model_store import ModelStore
    from serving.service import ranking_service
    from serving.stages.lazy_hydrator import LazyHydrator

    def unreachable():
        raise ConnectionError("the tray needs no feature store")

    cfg = cfg.model_copy(update={"candidates": cands})
    app = RankingApp.build(cfg, candidates_client=client, hydrator=LazyHydrator(unreachable, retry_s=3600),
                           models=ModelStore(lambda name: None, None, cfg.model, cfg.cascade, "/nonexistent"),
                           clock=FrozenClock(now_ms))
    app.warm = True
    took = []
    with TestClient(ranking_service(lambda: app).to_asgi()) as http:
        http.headers["authorization"] = f"Bearer {app.access.token}"
        for viewer in viewers[:50]:
            http.post("/v1/stories/tray", json={"viewer_id": viewer})
        for viewer in viewers:
            t0 = time.perf_counter()
            r = http.post("/v1/stories/tray", json={"viewer_id": viewer})
            took.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and not r.json()["degraded"], r.text
    return took


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_stories")
    parser.add_argument("--trays", type=int, default=2000, help="trays asked over the stepped clock")
    parser.add_argument("--naive", type=int, default=300, help="trays also asked the naive way")
    parser.add_argument("--http", type=int, default=500, help="trays also asked through the HTTP app")
    parser.add_argument("--edges", type=int, default=300, help="stories checked at their last live millisecond")
    add_world_argument(parser)
    args = parser.parse_args(argv)
    settings = chosen_world(args.world)
    world = ensure_lake(settings)
    last_day = partition_days(settings.lake_dir, "posts")[-1]
    end = day_end_ms(last_day)
    rng = np.random.default_rng(11)
    setup: dict = {}
    cfg = ServingConfig.load()
    cands = cfg.candidates.with_feed(key_prefix="bst:")
    keys = cands.keys
    result: dict = {"world": settings.world, "days": len(world["days"]), "stories_config": cfg.stories.model_dump()}
    with PeakRss() as rss, EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        with stopwatch(setup, "graph_replay_s"):
            worker = FanoutWorker(client, cands, name="bench-stories", fanout=False)
            for day in lake_days(settings.lake_dir, last_day):
                worker.consume(ev.lake_day(settings.lake_dir, day), None)  # a scratch replay
        with stopwatch(setup, "stories_load_s"):
            loaded = stories.load_from_lake(settings.lake_dir, last_day, client, keys)
        record = stories.live_in_lake(settings.lake_dir, last_day)  # the independent record
        created = dict(zip(record[c.STORY_ID].tolist(), record["created_ms"].tolist(), strict=True))
        if not created:
            raise SystemExit(f"no live story in the {settings.world} lake on {last_day}: regenerate the world")
        authors = record[c.AUTHOR_ID].unique()
        followers = {int(a): ids(client.smembers(keys.followers(int(a)))) for a in authors}
        viewers = np.unique(np.concatenate([f for f in followers.values() if len(f)]))
        result["loaded"] = {**loaded, "viewers_following_a_story_author": int(len(viewers))}

        clock = FrozenClock(end)
        chain = story_chain(client, cands, attempts=3)
        tray = StoryTray(client, chain, keys, cfg.stories, clock)
        for v in viewers[:50]:  # warm: connections
            tray.tray(int(v), cfg.stories.tray_limit)

        # 1. expiry over the stepped clock, and latency
        moments = np.linspace(end - 12 * HOUR_MS, end + 26 * HOUR_MS, 20).astype(np.int64)
        served = expired = empty = 0
        took, naive_took, sizes = [], [], []
        for i in range(args.trays):
            clock.now = int(moments[i * len(moments) // args.trays])
            viewer = int(rng.choice(viewers))
            t0 = time.perf_counter()
            outcome = tray.tray(viewer, cfg.stories.tray_limit)
            took.append((time.perf_counter() - t0) * 1000)
            assert not outcome.degraded, outcome.degraded
            got = [s["story_id"] for item in outcome.items for s in item["stories"]]
            served += len(got)
            empty += not got
            sizes.append(len(outcome.items))
            expired += sum(not stories.is_live(created[s], outcome.served_at_ms) for s in got if s in created)
            if i < args.naive:
                t0 = time.perf_counter()
                naive_tray(client, keys, chain, viewer, clock.now, cfg.stories.tray_limit)
                naive_took.append((time.perf_counter() - t0) * 1000)
        # 2. the edge: the last live millisecond, then the first expired one, for a follower the
        # author did not block and who did not block or mute the author (the filters' own say)
        edges: Counter = Counter()
        sample = record.iloc[rng.choice(len(record), min(args.edges, len(record)), replace=False)]
        for story, author, at in zip(sample[c.STORY_ID].tolist(), sample[c.AUTHOR_ID].tolist(),
                                     sample["created_ms"].tolist(), strict=True):
            viewer = next((int(v) for v in followers.get(author, ()) if not (
                client.sismember(keys.blocks(int(v)), author) or client.sismember(keys.blocked_by(int(v)), author)
                or client.sismember(keys.mutes(int(v)), author))), None)
            if viewer is None:
                continue
            found = []
            for now in (at + STORY_TTL_MS - 1, at + STORY_TTL_MS):
                clock.now = now
                items = tray.tray(viewer, cfg.stories.max_followees).items  # every account: a heavy
                # follower's tray holds hundreds, and a story in its last millisecond ranks low
                found.append(any(s["story_id"] == story for item in items for s in item["stories"]))
            edges[("served" if found[0] else "absent") + "_then_" + ("served" if found[1] else "gone")] += 1
        http = through_http(client, cfg, cands, end, [int(v) for v in rng.choice(viewers, args.http)]) \
            if args.http else []
    result["setup"] = setup
    result["expiry"] = {"trays": args.trays, "stories_served": served, "expired_stories_served": expired,
                        "empty_trays": empty, "mean_accounts_per_tray": round(float(np.mean(sizes)), 2),
                        "clock_from_h": -12, "clock_to_h": 26,
                        "edge_stories_checked": sum(edges.values()),
                        # at created + 24 h - 1 ms, then at created + 24 h: served_then_gone is right
                        "edge": dict(edges)}
    inproc, naive = percentiles(took), percentiles(naive_took) if naive_took else None
    result["latency"] = {
        "tray_in_process": inproc,
        "naive_round_trip_per_followee": naive,
        "naive_over_tray_p50": round(naive["p50_ms"] / inproc["p50_ms"], 2) if naive else None,
        "http_in_process": percentiles(http) if http else None,
        "note": " ".join((
            "tray_in_process: StoryTray.tray (viewer state, every followee's live range pipelined, the privacy",
            "filters, score, the last expiry check), at the stepped clock's moments; naive: the first --naive",
            "trays' viewers read one followee per round trip, whole story sets, filtered in Python; http: trays",
            "at the last day's end through the service's HTTP app (BentoML ASGI, Starlette test client)")),
    }
    result["peak_rss_mb"] = rss.peak_mb
    write_result("stories", result)
    _into_controls(result)


def _into_controls(result: dict) -> None:
    """The issue's measures live in controls.json: this benchmark owns its `stories` section."""
    path = RESULTS_DIR / "controls.json"
    controls = json.loads(path.read_text()) if path.exists() else {}
    controls["stories"] = {"source": "make bench-stories (benchmarks/results/stories.json)",
                           "world": result["world"], "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "expired_stories_served": result["expiry"]["expired_stories_served"],
                           "stories_served": result["expiry"]["stories_served"],
                           "edge_served_at_last_ms_then_gone": f"{result['expiry']['edge'].get('served_then_gone', 0)} "
                                                               f"of {result['expiry']['edge_stories_checked']}",
                           "tray_p50_ms": result["latency"]["tray_in_process"]["p50_ms"],
                           "tray_p99_ms": result["latency"]["tray_in_process"]["p99_ms"],
                           "tray_http_p99_ms": (result["latency"]["http_in_process"] or {}).get("p99_ms")}
    path.write_text(json.dumps(controls, indent=2) + "\n")


if __name__ == "__main__":
    main()
