"""bench-cascade: what the serving cascade costs in ranking quality, and what it saves in time.

    uv run python -m benchmarks.bench_cascade [--viewers 200]

On the service's own Home pools (the state `make bench-serving` prepares, benchmarks/serving_state.py:
medium world, end of the last day, ~1,000 candidates per viewer after filters), for the Home champion:
- quality: NDCG@10 and @30 with the simulator's true expected value as gain (position-free, the
  oracle's own quantity), for the full champion on every candidate and for each cascade variant
  (first stage = the champion's first k trees per booster, the full model on the best `keep`), plus
  the share of the full model's top 30 the cascade keeps in its own top 30;
- time: scoring the same feature block with the compiled models (1 thread), median per request.
Run `make bench-serving` once first (it prepares and keeps the state).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import redis

from benchmarks.common import write_result
from benchmarks.serving_state import VIEWERS_FILE, serving_workspace
from benchmarks.workspace import bench_settings
from data.days import day_end_ms
from data.redis_server import EmbeddedRedis
from data.world import TruthModel
from serving.app import RankingApp, wait_ready
from serving.compiled_ranker import CompiledRanker
from serving.config import ServingConfig
from serving.pipeline import Deadline, FeedQuery, FeedState
from serving.scoring_model import compiled_predict, prefix_ranker
from training.metrics import ndcg
from training.tracking import connect, load_ranker

TREES = (5, 10, 20)
KEEPS = (60, 120, 200)  # the service keeps max(keep, 2 x limit), at least `limit` per group
LIMIT = 30


def pools(app: RankingApp, viewers: list[int], now_ms: int) -> list[tuple[int, FeedState]]:
    """Each viewer's Home pool up to hydration: exactly what the service's scorer receives."""
    out = []
    stages = (app.home.source, app.home.dedupe, app.home.filters, app.home.hydrator)
    for v in viewers:
        query = FeedQuery("bench", "home", v, LIMIT, now_ms, Deadline(10_000))
        state = FeedState()
        for stage in stages:
            stage.run(query, state)
        if state.features is not None and len(state.candidates) > max(KEEPS):
            out.append((v, state))
    return out


def median_ms(fn, x, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="medium")
    parser.add_argument("--viewers", type=int, default=200)
    args = parser.parse_args(argv)
    settings = bench_settings(args.world)
    workspace = serving_workspace(settings)
    viewers = json.loads((workspace.home / VIEWERS_FILE).read_text())
    viewers = viewers[: args.viewers]
    world_days = json.loads((settings.world_dir / "world.json").read_text())["days"]
    now_ms = day_end_ms(world_days[-1])  # the serving benchmark's clock
    truth = TruthModel.load(settings.truth_dir)

    with EmbeddedRedis(data_dir=workspace.redis_dir, persist=True) as server:
        redis.Redis.from_url(server.url).config_set("save", "")
        cfg = ServingConfig.load().with_("impressions", enabled=False, record_seen=False)
        cfg = cfg.with_("model", engine="lightgbm").with_("cascade", enabled=False)
        app = RankingApp.from_settings(workspace.with_(redis_url=server.url), cfg)
        assert wait_ready(app, 300), app.models.status()
        ranker, version = load_ranker(connect(workspace.tracking_uri), "feed_ranker", "champion")
        found = pools(app, viewers, now_ms)
        app.close()

    cache = workspace.home / "serving" / "compiled"
    full = CompiledRanker.compile(ranker, cache)
    firsts = {k: CompiledRanker.compile(prefix_ranker(ranker, k), cache) for k in TREES}
    groups, gains, scores, timing = [], [], {}, {}
    overlap: dict[str, list[float]] = {}
    for i, (viewer, state) in enumerate(found):
        model = app.models.current("home")
        x = state.features[:, model.columns(state.feature_names)]
        n = len(x)
        ev = truth.expected_value(np.full(n, viewer), state.candidates.post,
                                  np.full(n, now_ms, dtype=np.int64))
        groups.append(np.full(n, i))
        gains.append(np.maximum(ev, 0.0))
        s_full = compiled_predict(full)(x)
        scores.setdefault("full", []).append(s_full)
        timing.setdefault("full", []).append(median_ms(full.predict, x))
        top_full = set(np.argsort(-s_full)[:LIMIT].tolist())
        in_net = state.candidates.in_network.astype(np.int8)
        for k in TREES:
            s_first = firsts[k].predict(x)
            t_first = median_ms(firsts[k].predict, x)
            for keep in KEEPS:
                name = f"trees{k}_keep{keep}"
                model_k = replace(model, full=full.predict, first_stage=firsts[k].predict)
                s, kept = model_k.score(x, keep, in_net, LIMIT)  # as the service's scorer
                scores.setdefault(name, []).append(s)
                timing.setdefault(name, []).append(t_first + median_ms(full.predict, x[kept]))
                overlap.setdefault(name, []).append(len(top_full & set(np.argsort(-s)[:LIMIT].tolist())) / LIMIT)
            scores.setdefault(f"first_stage_only_trees{k}", []).append(s_first)
    g, gain = np.concatenate(groups), np.concatenate(gains)
    rows = {}
    for name, parts in scores.items():
        s = np.concatenate(parts)
        rows[name] = {"ndcg10": round(ndcg(g, gain, s, 10), 4), "ndcg30": round(ndcg(g, gain, s, 30), 4)}
        if name in timing:
            rows[name]["score_p50_ms"] = round(float(np.median(timing[name])), 2)
        if name in overlap:
            rows[name]["top30_overlap_with_full"] = round(float(np.mean(overlap[name])), 3)
    base = rows["full"]
    for r in rows.values():
        r["ndcg10_vs_full_pct"] = round(100 * (r["ndcg10"] / base["ndcg10"] - 1), 2)
    rows["oracle"] = {"ndcg10": round(ndcg(g, gain, gain, 10), 4), "ndcg30": round(ndcg(g, gain, gain, 30), 4)}
    result = {
        "world": args.world, "day": world_days[-1], "model": f"feed_ranker:{version.version}",
        "requests": len(found), "candidates_mean": round(float(np.mean([len(s.candidates) for _, s in found])), 1),
        "gain": "simulator true expected value, clipped at 0", "limit": LIMIT,
        "served_config": {"first_stage_trees": ServingConfig.load().cascade.first_stage_trees,
                          "keep": ServingConfig.load().cascade.keep},
        "variants": rows,
    }
    path = write_result("cascade", result)
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
