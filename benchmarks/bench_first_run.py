"""`make bench-first-run`: a newcomer's first `make run`, timed from a fresh clone.

For each world size asked for (default: tiny, then small, `make run`'s default), the committed HEAD
is cloned into a temporary folder and `make setup` then `make run` are run there with LOUPE_SERVE=0,
on ports of their own. Recorded per world: the seconds of setup (uv from a warm package cache) and of
the run, the console lines the run printed (Loupe's summary only, when third-party noise is
silenced), and the run's own time per stage. The targets are for an idle 2-core machine: tiny within
4 minutes, small within 10, setup included.

    .venv/bin/python -m benchmarks.bench_first_run [tiny small]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import free_port, write_result
from data.settings import REPO_ROOT, child_env

TARGET_S = {"tiny": 240.0, "small": 600.0}
# the run's closing table (pipelines/console.py timing_table): "  <stage>  <seconds>"
STAGE_LINE = re.compile(r"^  (?P<stage>\S.*?)\s{2,}(?P<time>\d+:\d{2}|\d+(\.\d+)? s)$")


def seconds_of(text: str) -> float:
    """`12.3 s` or `m:ss`, as console.format_seconds writes them."""
    if text.endswith(" s"):
        return float(text[:-2])
    minutes, rest = text.split(":")
    return int(minutes) * 60 + int(rest)


def stage_seconds(output: str) -> dict[str, float]:
    lines = output.splitlines()
    if "time per stage:" not in lines:
        return {}
    stages = {}
    for line in lines[lines.index("time per stage:") + 1:]:
        match = STAGE_LINE.match(line)
        if not match:
            break
        stages[match["stage"].strip()] = seconds_of(match["time"])
    return stages


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True)  # said below
    return time.perf_counter() - start, done


def settled_load(below: float = 1.0, wait_s: float = 120.0) -> float:
    """The 1-minute load once it falls below `below` (at most `wait_s`): the run before this one
    (the previous world's) keeps the load up for a minute after it ends, and would be recorded as
    if the machine were busy."""
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def first_run(world: str, workdir: Path) -> dict:
    clone = workdir / f"loupe-{world}"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    # nothing of this shell's Loupe settings: the clone runs on its defaults, on ports of its own
    env = child_env(None, LOUPE_WORLD=world, LOUPE_SERVE="0", LOUPE_REDIS_PORT=str(free_port()),
                    LOUPE_STREAM_PORT=str(free_port()), LOUPE_SERVING_PORT=str(free_port()))
    env.pop("VIRTUAL_ENV", None)  # the clone's make uses its own .venv
    load_before = settled_load()  # the targets are for an idle machine: say how idle it was
    setup_s, setup = timed(["make", "setup"], clone, env)
    if setup.returncode != 0:
        raise RuntimeError(f"make setup failed in {clone}:\n{setup.stdout[-3000:]}{setup.stderr[-3000:]}")
    run_s, run = timed(["make", "run"], clone, env)
    output = run.stdout + run.stderr
    if run.returncode != 0:
        raise RuntimeError(f"make run ({world}) failed in {clone}:\n{output[-5000:]}")
    (workdir / f"make_run_{world}.log").write_text(output)
    total = setup_s + run_s
    return {
        "world": world,
        "load_1min_before": round(load_before, 2),
        "setup_s": round(setup_s, 1),
        "run_s": round(run_s, 1),
        "total_s": round(total, 1),
        "target_s": TARGET_S.get(world),
        "within_target": total <= TARGET_S[world] if world in TARGET_S else None,
        "console_lines": len(output.splitlines()),
        "stage_seconds": stage_seconds(run.stdout),
    }


def main(argv: list[str]) -> None:
    worlds = argv or ["tiny", "small"]
    workdir = Path(tempfile.mkdtemp(prefix="loupe-first-run-"))
    results = []
    try:
        for world in worlds:
            print(f"{world}: fresh clone, make setup, make run ...", flush=True)
            results.append(first_run(world, workdir))
            print(json.dumps(results[-1], indent=2), flush=True)
    finally:
        logs = REPO_ROOT / ".loupe" / "bench" / "first_run"
        logs.mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("make_run_*.log"):
            shutil.copy(log, logs / log.name)
        shutil.rmtree(workdir, ignore_errors=True)
    write_result("first_run", {
        "what": "a fresh clone's make setup + make run (LOUPE_SERVE=0), per world size; the console's "
                "line count and the run's time per stage (its closing table)",
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], check=True, cwd=REPO_ROOT,
                                 capture_output=True, text=True).stdout.strip(),
        "before": "issue 14's report of a tiny first run: ~11 min on a shared machine, 600 console lines",
        "runs": results,
    })


if __name__ == "__main__":
    main(sys.argv[1:])
