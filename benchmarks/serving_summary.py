"""bench-serving's summaries: what the load client recorded, read as latency, pools, stages and
scorers per service, compared fast vs naive, and the result JSON (benchmarks/results/serving.json)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from benchmarks.serving_load import LIMIT, Measured, pool_size
from benchmarks.serving_state import CANDIDATES, MARKER, MARKER_TTL_S, PreparedState
from serving.config import ServingConfig


def pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def summarize(runs: list[dict], serving_cfg) -> dict:
    reqs = [r for run in runs for r in run["requests"]]
    wall = sum(run["wall_s"] for run in runs)
    ok = [r for r in reqs if r["status"] == 200]
    ms = [r["ms"] for r in reqs]
    errors = [r for r in reqs if r["status"] != 200]
    degraded = Counter(d for r in ok for d in r["degraded"])
    reasons = Counter(f"{d}: {why}" for r in ok for d, why in r["degraded_reasons"].items())
    stages = sorted({s for r in ok for s in r["stage_ms"]})
    pools = [pool_size(r["candidates"], serving_cfg) for r in ok]
    ranked = [p - sum(r["filtered"].values()) for p, r in zip(pools, ok)]
    sources = sorted({s for r in ok for s in r["candidates"]})
    reasons_filtered = sorted({s for r in ok for s in r["filtered"]})
    return {
        "requests": len(reqs),
        "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99), "max_ms": pct(ms, 100),
        "mean_ms": round(float(np.mean(ms)), 2) if ms else None,
        "rps": round(len(reqs) / wall, 2) if wall else None,
        "wall_s": round(wall, 1),
        "errors": len(errors),
        "error_samples": [{k: r.get(k) for k in ("status", "error", "body", "viewer_id")} for r in errors[:5]],
        "degraded_responses": sum(1 for r in ok if r["degraded"]),
        "degraded_by_stage": dict(degraded.most_common()),
        "degraded_reasons": dict(reasons.most_common(10)),
        "scorer": dict(Counter(r["scorer"] for r in ok)),
        "model_version": dict(Counter(r["model_version"] for r in ok)),
        "server_total_p50_ms": pct([r["stage_ms"]["total"] for r in ok], 50),
        "server_total_p99_ms": pct([r["stage_ms"]["total"] for r in ok], 99),
        "stage_p50_ms": {s: pct([r["stage_ms"][s] for r in ok if s in r["stage_ms"]], 50) for s in stages},
        "stage_p99_ms": {s: pct([r["stage_ms"][s] for r in ok if s in r["stage_ms"]], 99) for s in stages},
        "candidates_pool_mean": round(float(np.mean(pools)), 1) if pools else None,
        "candidates_ranked_mean": round(float(np.mean(ranked)), 1) if ranked else None,
        "candidates_ranked_p5": pct(ranked, 5),
        "candidates_per_source_mean": {s: round(float(np.mean([r["candidates"].get(s, 0) for r in ok])), 1)
                                       for s in sources},
        "filtered_mean": {s: round(float(np.mean([r["filtered"].get(s, 0) for r in ok])), 1)
                          for s in reasons_filtered},
        "viewers_served": len({r["viewer_id"] for r in ok}),
        "cores_used_by_bench_per_block": [run.get("bench_cores") for run in runs],
        # how the service's workers shared each block (warm-up included): one worker with every
        # connection serves one request at a time, the other idles
        "service_workers_per_block": [run.get("workers") for run in runs],
        "cores_used_by_other_processes_per_block": [run.get("other_processes_cores") for run in runs],
    }


def page_overlap(fast: list[dict], naive: list[dict]) -> dict:
    """How alike the two services' pages are for the same viewer (cascade + compiled vs full LightGBM),
    over fast responses the champion scored (not the heuristic fallback)."""
    by_viewer = {}
    for r in fast:
        if r["status"] == 200 and r["scorer"] == "compiled":
            by_viewer.setdefault(r["viewer_id"], r["items"])
    same_set, same_top10 = [], []
    for r in naive:
        mine = by_viewer.get(r["viewer_id"])
        if r["status"] != 200 or mine is None or not r["items"]:
            continue
        same_set.append(len(set(mine) & set(r["items"])) / len(r["items"]))
        same_top10.append(len(set(mine[:10]) & set(r["items"][:10])) / max(len(r["items"][:10]), 1))
    return {"viewers_compared": len(same_set),
            "page_overlap_mean": round(float(np.mean(same_set)), 3) if same_set else None,
            "top10_overlap_mean": round(float(np.mean(same_top10)), 3) if same_top10 else None}


def warnings_of(f: dict, n: dict, f1: dict | None, n1: dict | None) -> list[str]:
    """What makes a summary not the fast path's latency: heuristic or degraded responses, errors."""
    warnings = []
    for label, s in (("fast", f), ("fast at concurrency 1", f1)):
        if s is None:
            continue
        heuristic = s["scorer"].get("heuristic", 0)
        if heuristic or s["degraded_responses"]:
            warnings.append(f"{label}: {heuristic} of {s['requests']} responses scored by the heuristic, "
                            f"{s['degraded_responses']} degraded ({s['degraded_by_stage']}): "
                            "those responses skipped the model (or part of the pool): not the fast path's "
                            "latency")
    for label, s in (("fast", f), ("naive", n), ("fast at concurrency 1", f1), ("naive at concurrency 1", n1)):
        if s is not None and s["errors"]:
            warnings.append(f"{label}: {s['errors']} errors, e.g. {s['error_samples'][:2]}")
    if n["degraded_responses"]:
        warnings.append(f"naive: {n['degraded_responses']} degraded responses ({n['degraded_by_stage']})")
    return warnings


def targets(f: dict, f1: dict | None, floor: dict | None, speedup: float | None) -> dict:
    """Issue 17's targets, each with the measured value and whether it is met."""
    share = f["scorer"].get("compiled", 0) / max(f["requests"], 1)
    ratio = f1["p50_ms"] / floor["floor_p50_ms"] if f1 and floor else None
    rows = {
        "c1_p99_ms_le_15": (f1["p99_ms"] if f1 else None, lambda v: v <= 15),
        "c2_p99_ms_le_25": (f["p99_ms"], lambda v: v <= 25),
        "c2_rps_ge_80": (f["rps"], lambda v: v >= 80),
        "c2_champion_share_ge_0.99": (round(share, 3), lambda v: v >= 0.99),
        "p50_over_floor_le_2": (round(ratio, 2) if ratio else None, lambda v: v <= 2),
        "errors_eq_0": (f["errors"], lambda v: v == 0),
        "speedup_over_naive_ge_8": (speedup, lambda v: v >= 8),
    }
    return {name: {"measured": v, "met": None if v is None else bool(ok(v))} for name, (v, ok) in rows.items()}


def serving_result(args, st: PreparedState, m: Measured, prep_wall: float, floor: dict | None = None) -> dict:
    """benchmarks/results/serving.json: the fast service's numbers at the top, the naive one's beside
    them, both summaries whole, how the state was prepared and how the load ran."""
    fast_cfg, naive_cfg = (ServingConfig.load(st.config_files[name]) for name in ("fast", "naive"))
    f = summarize(m.fast, fast_cfg)
    n = summarize(m.naive, naive_cfg)
    f1 = summarize(m.fast_c1, fast_cfg) if m.fast_c1 else None
    n1 = summarize(m.naive_c1, naive_cfg) if m.naive_c1 else None
    state = st.state
    per_round_s = args.duration / args.rounds
    per_round_n = max(1, round(args.naive_requests / args.rounds))
    speedup = round(n["p50_ms"] / f["p50_ms"], 1) if f["p50_ms"] and n["p50_ms"] else None
    return {
        "world": args.world, "test_day": st.test_day, "service_now": st.workspace.now,
        "candidates_per_request": CANDIDATES, "limit": LIMIT, "concurrency": args.concurrency,
        "requests": f["requests"], "p50_ms": f["p50_ms"], "p95_ms": f["p95_ms"], "p99_ms": f["p99_ms"],
        "rps": f["rps"], "errors": f["errors"], "degraded_responses": f["degraded_responses"],
        "naive_p50_ms": n["p50_ms"], "naive_p99_ms": n["p99_ms"],
        "speedup_p50": speedup,
        "champion_share": round(f["scorer"].get("compiled", 0) / max(f["requests"], 1), 3),
        "p50_ms_concurrency_1": f1["p50_ms"] if f1 else None, "p99_ms_concurrency_1": f1["p99_ms"] if f1 else None,
        "floor_p50_ms": floor["floor_p50_ms"] if floor else None,
        "p50_over_floor": round(f1["p50_ms"] / floor["floor_p50_ms"], 2) if floor and f1 else None,
        "targets": targets(f, f1, floor, speedup),
        "stage_p50_ms": f["stage_p50_ms"],
        "stage_p99_ms": f["stage_p99_ms"],
        "naive_stage_p50_ms": n["stage_p50_ms"],
        "scorer": f["scorer"], "model_version": f["model_version"],
        "candidates_pool_mean": f["candidates_pool_mean"], "candidates_ranked_mean": f["candidates_ranked_mean"],
        "duration_s": f["wall_s"], "viewers": len(st.viewers),
        "fast": f, "naive": n,
        "fast_model_scored_share": round(f["scorer"].get("compiled", 0) / max(f["requests"], 1), 3),
        "warnings": warnings_of(f, n, f1, n1),
        "floor": floor,
        "fast_concurrency_1": f1,
        "naive_concurrency_1": n1,
        "speedup_p50_concurrency_1": round(n1["p50_ms"] / f1["p50_ms"], 1) if f1 and n1 else None,
        "fast_vs_naive_pages": page_overlap([r for run in (*m.fast, *m.fast_c1) for r in run["requests"]],
                                            [r for run in (*m.naive, *m.naive_c1) for r in run["requests"]]),
        "impression_rows_logged": m.impressions_logged,  # both services log (same endpoint), warm-ups included
        "impression_rows_expected_at_most": LIMIT * sum(
            len(run["requests"]) + run["warmup"] for run in (*m.fast, *m.naive, *m.fast_c1, *m.naive_c1)),
        "service_ready_s": m.ready_s,
        "service_rss_mb": m.rss_mb,
        "state": {
            "reused": st.reused,
            "prepared_at": state["prepared_at"],
            "prep_seconds": state["seconds"],
            "prep_total_s": state["total_s"],
            "this_run_prep_wall_s": prep_wall,
            "candidates": "bench_candidates' state, built by the candidate assets (pipelines/operations.py "
                          "prepare_candidate_state): rebuild through T-1, fan-out of T, trending/popular/"
                          "social/embeddings as of T-1 (index under LOUPE_HOME/candidates/embeddings)",
            "features": "day-T snapshots (event time = end of T = the service's clock), Feast apply + "
                        "online store + packed view (write_window, as feast_online) of a copy cut to the pre-sampled "
                        "viewers' viewer_author/viewer/viewer_tags rows, all author/post/post_tags rows: "
                        "a full medium materialize takes ~37 min, nearly all viewer_author; requests read "
                        "only their own viewer's rows, so both paths read exactly what they would read "
                        "from a full store. Parity packed == get_online_features checked before timing.",
            "feature_rows": state.get("feature_rows"),
            "packed_rows": state.get("packed_rows"),
            "parity": state.get("parity"),
            "selection": state.get("selection"),
            "presample": state.get("presample"),
            "redis": "persistent embedded Valkey under <medium>/bench_serving/redis, marker key "
                     f"{MARKER} (TTL {MARKER_TTL_S // 3600} h, below the candidate keys' own TTLs)",
        },
        "configs": {
            "fast": "serving/config.toml as shipped; [impressions] record_seen = false (impression log on)",
            "naive": "fast + [hydration] reader=feast, [model] engine=lightgbm threads=2, [cascade] "
                     "enabled=false, [budget] total_ms=10000 redis_timeout_ms=2000, source timeout_ms=2000",
        },
        "notes": {
            "client": "benchmarks/load_client.py in its own process: asyncio + aiohttp, closed loop, "
                      f"{args.concurrency} workers with keep-alive connections, POST /v1/feed/home "
                      f"limit {LIMIT}, viewers cycled; latency measured client-side (includes HTTP, "
                      "JSON, BentoML); stage_ms and server_total are the service's own.",
            "schedule": f"{args.rounds} alternating blocks (fast {per_round_s:.0f} s after {args.warmup} "
                        f"unrecorded requests, then naive {per_round_n} requests), both services up "
                        "throughout; then fast, then naive, at concurrency 1",
            "machine": "2 shared cores: the client, both services and Valkey run on the same box",
            "speedup": "speedup_p50 = naive_p50_ms / p50_ms at the run's concurrency, whatever scored the "
                       "fast responses (see scorer and warnings: a heuristic fallback is faster than the "
                       "model); speedup_p50_concurrency_1 compares the two with one request in flight",
            "state_size": "the bench Valkey holds ~1 GB (candidates + the cut feature store), a full "
                          "store several GB: per-key lookups cost the same, caches may be a little kinder",
            "pool": "candidates_pool = in-network (<= its cap) + out-of-network blend (<= out_of_network_candidates), "
                    "from the response's per-source counts; ranked = pool - filtered (dedupe + filters)",
        },
        "service_log_problems": m.log_problems,
        "peak_rss_mb": st.rss.peak_mb,
    }
