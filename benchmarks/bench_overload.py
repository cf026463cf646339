"""bench-overload: the ranking service driven past its capacity, with and without admission.

    uv run python -m benchmarks.bench_overload [--levels 1,2,4,8,16] [--duration 30]

Runs on bench-serving's prepared state of the medium world (prepared first if there is none: see
benchmarks/serving_state.py; the champion is the one bench-quality registered) with its viewers,
whose Home pools hold ~1,000 candidates. Two services run side by side:

- admission: serving/config.toml as shipped (`record_seen = false` so every request of a viewer
  sees the same candidates): past `admission.max_in_flight` requests in the worker, or after
  waiting `admission.max_wait_ms` for a worker thread, a request is answered by the cheap path
  (`degraded: overload`);
- no_admission: the same with admission switched off (limits no request reaches): every request
  runs the full pipeline however long it queued;
- cheap_only: every request on the cheap path (it "waited longer than 0 ms"): the ceiling, the
  cheapest answer this stack (HTTP, BentoML, two Redis round trips) gives on this machine.

At each concurrency level (closed loop, benchmarks/load_client.py in its own process) both are
loaded for `duration` seconds, one after the other. Per level and service: client p50 / p99, rps,
errors, the share ranked by the champion, degraded and overload shares, and empty pages (every
viewer has candidates, so every empty page counts). Targets: 0 errors and 0 empty pages at every
level; p99 <= 2x the budget. Results: benchmarks/results/overload.json.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import tomli_w

from benchmarks.common import write_result
from benchmarks.serving_load import LIMIT, BenchService, load
from benchmarks.serving_state import prepared_state
from benchmarks.serving_summary import pct, summarize

OFF = {"max_wait_ms": 1e9, "max_in_flight": 1_000_000}  # admission that admits everything
CHEAP_ONLY = {"max_wait_ms": 0.0}  # every request waited longer than that: all on the cheap path


def write_admission_configs(fast: Path) -> dict[str, Path]:
    with open(fast, "rb") as f:
        shipped = tomllib.load(f)
    out = {"admission": fast}
    for name, admission in (("no_admission", OFF), ("cheap_only", CHEAP_ONLY)):
        changed = json.loads(json.dumps(shipped))
        changed.setdefault("admission", {}).update(admission)
        out[name] = fast.with_name(f"serving_{name}.toml")
        out[name].write_text(tomli_w.dumps(changed))
    return out


def level_summary(runs: list[dict], cfg, budget_ms: float) -> dict:
    s = summarize(runs, cfg)
    ok = [r for run in runs for r in run["requests"] if r["status"] == 200]
    n = max(len(ok), 1)
    cheap = [r["ms"] for r in ok if "overload" in r["degraded"]]
    full = [r["ms"] for r in ok if "overload" not in r["degraded"]]
    return {
        "requests": s["requests"], "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "max_ms": s["max_ms"],
        "rps": s["rps"], "errors": s["errors"], "error_samples": s["error_samples"],
        "empty_pages": sum(1 for r in ok if not r["items"]),
        "champion_share": round(sum(1 for r in ok if r["model_version"] not in ("heuristic", "chronological")) / n, 3),
        "degraded_share": round(sum(1 for r in ok if r["degraded"]) / n, 3),
        "overload_share": round(sum(1 for r in ok if "overload" in r["degraded"]) / n, 3),
        "p99_within_2x_budget": s["p99_ms"] is not None and s["p99_ms"] <= 2 * budget_ms,
        "by_path": {  # client-side latency of the pages each path answered
            "full": {"requests": len(full), "p50_ms": pct(full, 50), "p99_ms": pct(full, 99)},
            "cheap": {"requests": len(cheap), "p50_ms": pct(cheap, 50), "p99_ms": pct(cheap, 99)},
        },
        "server_total_p99_ms": s["server_total_p99_ms"],
        "degraded_by_stage": s["degraded_by_stage"],
        "degraded_reasons": s["degraded_reasons"],
        "cores_used_by_other_processes": s["cores_used_by_other_processes_per_block"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="medium")
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per level and service")
    parser.add_argument("--warmup", type=int, default=20, help="unrecorded requests before each block")
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--presample", type=int, default=600)
    parser.add_argument("--reprepare", action="store_true")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]

    from serving.config import ServingConfig

    with prepared_state(args) as st:
        configs = write_admission_configs(st.config_files["fast"])
        cfgs = {name: ServingConfig.load(path) for name, path in configs.items()}
        budget_ms = cfgs["admission"].budget.total_ms
        services = {name: BenchService.start(name, st.workspace, path) for name, path in configs.items()}
        try:
            ready = {name: svc.wait_ready() for name, svc in services.items()}
            print(f"services ready in {ready} s", flush=True)
            per_level = []
            for k, level in enumerate(levels):
                row: dict = {"concurrency": level}
                for name, svc in services.items():
                    run = load(svc, st.workspace, st.viewers_file, f"overload_{name}_c{level}", level,
                               args.warmup, k * 97, duration_s=args.duration)
                    row[name] = level_summary([run], cfgs[name], budget_ms)
                per_level.append(row)
            logs = {name: svc.log_problems() for name, svc in services.items()}
        finally:
            for svc in services.values():
                svc.stop()

    adm = [row["admission"] for row in per_level]
    result = {
        "world": args.world, "test_day": st.test_day, "limit": LIMIT, "viewers": len(st.viewers),
        "budget_ms": budget_ms, "admission": cfgs["admission"].admission.model_dump(),
        "duration_s_per_level": args.duration,
        "levels": per_level,
        "targets": {
            "zero_errors_every_level": all(r["errors"] == 0 for r in adm),
            "zero_empty_pages_every_level": all(r["empty_pages"] == 0 for r in adm),
            "p99_within_2x_budget_every_level": all(r["p99_within_2x_budget"] for r in adm),
        },
        "service_ready_s": ready,
        "service_log_problems": logs,
        "notes": {
            "client": "benchmarks/load_client.py in its own process, closed loop, keep-alive, POST "
                      f"/v1/feed/home limit {LIMIT}; latency client-side (HTTP, JSON, BentoML included)",
            "viewers": "bench-serving's: Home pools of ~1,000 candidates (>= 970), so an empty page is "
                       "never the viewer's lack of candidates",
            "machine": "2 shared cores: the client, the three services (2 workers each, loaded one at a "
                       "time) and Valkey on one box",
            "no_admission": f"the shipped config with [admission] {OFF}: the full pipeline for every "
                            "request, however long it queued",
            "cheap_only": f"the shipped config with [admission] {CHEAP_ONLY}: every request on the cheap "
                          "path, the ceiling of what admission can reach on this machine",
        },
    }
    path = write_result("overload", result)
    print(f"wrote {path}")
    for row in per_level:
        for name in services:
            r = row[name]
            print(f"c={row['concurrency']:>2} {name:<12} p50 {r['p50_ms']} p99 {r['p99_ms']} rps {r['rps']} "
                  f"(full {r['by_path']['full']['p99_ms']}, cheap {r['by_path']['cheap']['p99_ms']}) "
                  f"champion {r['champion_share']} overload {r['overload_share']} empty {r['empty_pages']} "
                  f"errors {r['errors']}", flush=True)


if __name__ == "__main__":
    main()
