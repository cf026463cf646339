"""bench-serving: the ranking service under load over HTTP, against the naive path, same run.

    uv run python -m benchmarks.bench_serving [--concurrency 2] [--duration 60] [--naive-requests 150]

Two services run side by side as subprocesses (serving.launcher), each over the same prepared state
of the medium world (benchmarks/serving_state.py), and are loaded in turn by a separate client
process (benchmarks/load_client.py: asyncio + aiohttp, closed loop, fixed concurrency) with Home
requests `{"viewer_id": v, "limit": 30}` cycling through sampled viewers whose Home pool is ~1,000
candidates (~500 in-network + 500 Explore):

- fast: serving/config.toml as shipped (packed reader, compiled champion, cascade, 50 ms budget,
  impression logging on), except `record_seen = false` so every request of a viewer (and both
  services) sees the same candidates;
- naive: the same endpoint and pipeline with Feast's `get_online_features` as the hydrator and
  LightGBM's `Booster.predict` (2 threads) scoring every candidate with the full model, no cascade,
  a 10 s budget and generous source / Redis timeouts so it always does the whole work.

The two are measured in alternating blocks (fast, naive, fast, naive, ...) so that the machine's
noise falls on both; then the fast one alone at concurrency 1 (benchmarks/serving_load.py). Last, with
the services stopped, the floor of the same requests (benchmarks/serving_floor.py): their Redis
round trips replayed raw plus the compiled scoring of their feature matrix, the work no serving
code can avoid; `p50_over_floor` is the fast service's p50 at one in flight over it.
Results: benchmarks/results/serving.json (benchmarks/serving_summary.py), with issue 17's targets
(`targets`: each measured value and whether it is met).
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import write_result
from benchmarks.serving_floor import measure_floor
from benchmarks.serving_load import LIMIT, measure
from benchmarks.serving_state import prepared_state
from benchmarks.serving_summary import serving_result
from serving.config import ServingConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="medium")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of fast load (all rounds)")
    parser.add_argument("--naive-requests", type=int, default=150, help="naive requests (all rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating fast/naive blocks")
    parser.add_argument("--c1-duration", type=float, default=30.0, help="fast at concurrency 1 (0: skip)")
    parser.add_argument("--c1-naive-requests", type=int, default=40, help="naive at concurrency 1 (0: skip)")
    parser.add_argument("--warmup", type=int, default=30, help="unrecorded requests before each fast block")
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--presample", type=int, default=600)
    parser.add_argument("--reprepare", action="store_true", help="rebuild the state even if it is marked ready")
    parser.add_argument("--floor-viewers", type=int, default=100, help="requests whose floor is measured (0: skip)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    with prepared_state(args) as st:
        prep_wall = round(time.perf_counter() - started, 1)
        measured = measure(st.workspace, st.config_files, st.viewers_file, args)
        floor = measure_floor(st.workspace, ServingConfig.load(st.config_files["fast"]),
                              st.viewers[: args.floor_viewers], LIMIT) if args.floor_viewers else None
    result = serving_result(args, st, measured, prep_wall, floor)
    path = write_result("serving", result)
    print(f"wrote {path}")
    for w in result["warnings"]:
        print(f"WARNING: {w}", flush=True)


if __name__ == "__main__":
    main()
