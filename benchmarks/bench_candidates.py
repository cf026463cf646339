"""Recall of the candidate sources: of the posts each viewer engaged with on the test day, how many
does each source (and the blend) propose within its first 100 / 500 / 1,000 candidates?

    uv run python -m benchmarks.bench_candidates [--world medium] [--viewers 3000]

State as a production day would have it (medium world, test day T = the last day): the graph, post
sets and caches rebuilt from the lake through T-1; the day-T posts fanned out by the worker (Home
caches are real-time); trending, popular, social and the embeddings built by their daily jobs as of
the end of T-1. Reads happen at the end of T with every source's cap raised to 1,000. Truth: the
posts a viewer positively engaged with on T (like, comment, share, save, profile visit, long
dwell), on either surface; viewers sampled with a fixed seed.

The engaged posts were all shown by the simulator's logging policy (in-network, celebrity, Explore
popular and random), so the random Explore share is out of any source's reach by construction.
"""

from __future__ import annotations

import argparse
import time

import dagster as dg
import numpy as np
import pandas as pd
import redis

from benchmarks.common import PeakRss, write_result
from benchmarks.workspace import bench_settings, ensure_feature_snapshots, ensure_lake
from candidate_gen.blend import blend
from candidate_gen.config import CandidateConfig
from candidate_gen.explore.embeddings import load
from candidate_gen.filters import default_chain
from candidate_gen.lake_reader import read_days
from candidate_gen.reads import StepReader
from candidate_gen.sources.base import SourceRequest, fetch
from candidate_gen.sources.catalog import SOURCE_NAMES, build_sources
from data import columns as c
from data.days import day_end_ms, day_start
from data.redis_server import EmbeddedRedis
from pipelines.operations import prepare_candidate_state
from pipelines.resources import build_resources

KS = (100, 500, 1000)


def engaged_posts(lake_dir, day: str) -> dict[int, set[int]]:
    eng = read_days(lake_dir, "engagements", day, day, [c.VIEWER_ID, c.POST_ID, c.TYPE, c.VALUE, c.TS])
    eng = eng[(pd.to_datetime(eng[c.TS], utc=True) >= day_start(day))]
    positive = eng[c.TYPE].isin(["like", "comment", "share", "save", "profile_visit"]) | (
        (eng[c.TYPE] == "dwell") & (eng[c.VALUE].fillna(0) >= c.LONG_DWELL_MS)
    )
    eng = eng[positive]
    return {int(v): set(map(int, g)) for v, g in eng.groupby(c.VIEWER_ID)[c.POST_ID]}


def recall(lists: dict[str, list[list[int]]], truth: list[set[int]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, per_viewer in lists.items():
        out[name] = {
            str(k): round(float(np.mean([len(set(ids[:k]) & t) / len(t)
                                         for ids, t in zip(per_viewer, truth, strict=True)])), 4)
            for k in KS
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="medium")
    parser.add_argument("--viewers", type=int, default=3000)
    args = parser.parse_args()
    settings = bench_settings(args.world)
    world = ensure_lake(settings)
    days = world["days"]
    test_day, prev = days[-1], days[-2]
    ensure_feature_snapshots(settings, [prev])  # the social source's affinity comes from viewer_author
    cfg = CandidateConfig.load()
    wide = {n: cfg.source(n).changed(cap=1000) for n in SOURCE_NAMES}
    cfg = cfg.model_copy(update={"sources": {**cfg.sources, **wide}})
    result: dict = {"world": args.world, "test_day": test_day, "state_through": prev, "ks": list(KS)}

    with EmbeddedRedis() as server, PeakRss() as rss, dg.DagsterInstance.ephemeral() as instance:
        client = redis.Redis.from_url(server.url)
        state = prepare_candidate_state(build_resources(settings, server.url), instance, test_day, prev,
                                        explore_day=prev)
        result["rebuild"] = state.metadata["candidates/rebuild"]
        result["fanout"] = state.metadata["candidates/fanout"]
        timings = {f"{step}_s": state.seconds[f"candidates/{step}"]
                   for step in ("rebuild", "fanout", "trending", "social", "fatigue", "integrity", "embeddings")}
        print(f"state ready: {timings}", flush=True)

        sources = build_sources(client, cfg, load(state.embeddings_index))
        truth_by_viewer = engaged_posts(settings.lake_dir, test_day)
        rng = np.random.default_rng(20261001)
        viewers = sorted(truth_by_viewer)
        viewers = sorted(rng.choice(viewers, size=min(args.viewers, len(viewers)), replace=False).tolist())
        now = day_end_ms(test_day)
        chain = default_chain(client, cfg, seen=False)
        reader = StepReader(client)
        weights = {n: float(cfg.source(n).cap if n != "in_network" else 1000) for n in SOURCE_NAMES}
        lists: dict[str, list[list[int]]] = {n: [] for n in (*SOURCE_NAMES, "blended", "blended_filtered")}
        latency: dict[str, list[float]] = {n: [] for n in SOURCE_NAMES}
        for v in viewers:
            request = SourceRequest(v, now)
            got = {}
            for name, source in sources.items():
                start = time.perf_counter()
                got[name] = fetch(source, request, reader)
                latency[name].append((time.perf_counter() - start) * 1000)
                lists[name].append([x.post_id for x in got[name]])
            mixed = blend(got, weights, 1000)
            lists["blended"].append([x.post_id for x in mixed])
            kept = chain.run(v, mixed, now).kept
            lists["blended_filtered"].append([x.post_id for x in kept])
        truth = [truth_by_viewer[v] for v in viewers]
        result["viewers"] = len(viewers)
        result["engaged_posts_per_viewer"] = round(float(np.mean([len(t) for t in truth])), 2)
        result["recall"] = recall(lists, truth)
        result["candidates_per_viewer"] = {n: round(float(np.mean([len(x) for x in lists[n]])), 1) for n in lists}
        result["source_p50_ms"] = {n: round(float(np.percentile(latency[n], 50)), 2) for n in SOURCE_NAMES}
        result["source_p99_ms"] = {n: round(float(np.percentile(latency[n], 99)), 2) for n in SOURCE_NAMES}
        result["build_seconds"] = timings
    result["peak_rss_mb"] = rss.peak_mb
    path = write_result("candidates", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
