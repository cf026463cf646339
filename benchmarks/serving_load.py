"""bench-serving's load: the services under test (the ranking service, started by serving.launcher
with a config of its own) and the closed-loop load client (benchmarks/load_client.py) run against
them in its own process, in the benchmark's schedule."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from benchmarks.common import free_port
from data.settings import REPO_ROOT, Settings, child_env, serving_secrets
from serving.__main__ import post
from serving.launcher import ServiceProcess, start_ranking_service

LIMIT = 30  # posts per page, every request
# a BentoML access line: "[entry_service:<name>:<worker>] <client ip:port> (...path=/v1/feed/...)"
ACCESS_LINE = re.compile(r"\[entry_service:[^:\]]+:(\d+)\] (\S+) \([^)]*path=/v1/feed/")


@dataclass
class BenchService:
    """One service under test: the ranking service over the benchmark's workspace with its own
    config, on a free port, logging to <workspace>/service_<name>.log."""

    name: str
    process: ServiceProcess
    token: str

    @classmethod
    def start(cls, name: str, workspace: Settings, config: Path) -> BenchService:
        settings = workspace.with_(serving_config=config)
        process = start_ranking_service(settings, free_port(), workspace.home / f"service_{name}.log")
        return cls(name, process, serving_secrets(settings).api_token)

    @property
    def url(self) -> str:
        return self.process.url

    def wait_ready(self) -> float:
        return self.process.wait_ready()

    def home(self, viewer: int, limit: int = LIMIT) -> dict:
        return post(self.url + "/v1/feed/home", {"viewer_id": viewer, "limit": limit}, self.token, timeout=30)

    def rss_mb(self) -> float:
        try:
            root = psutil.Process(self.process.process.pid)
            procs = [root, *root.children(recursive=True)]
            return round(sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20, 1)
        except psutil.Error:
            return float("nan")

    def worker_split(self, since: int) -> tuple[dict, int]:
        """How the service's workers shared the feed requests logged after byte `since` of its log:
        requests and client connections per worker (BentoML's access lines name both); and the
        log's size now, for the next call."""
        with open(self.process.log, "rb") as fh:
            fh.seek(since)
            text = fh.read()
        requests: dict[str, int] = {}
        connections: dict[str, set] = {}
        for m in ACCESS_LINE.finditer(text.decode(errors="replace")):
            worker, client = m.group(1), m.group(2)
            requests[worker] = requests.get(worker, 0) + 1
            connections.setdefault(worker, set()).add(client)
        return ({"requests": requests, "connections": {w: len(c) for w, c in connections.items()}},
                since + len(text))

    def log_problems(self, samples: int = 8) -> dict:
        """Warnings, errors and tracebacks in the service's log (not its per-request access lines)."""
        lines = self.process.log.read_text(errors="replace").splitlines()
        bad = [ln for ln in lines if any(m in ln for m in ("WARNING", "ERROR", "Traceback", "Exception"))]
        distinct = list(dict.fromkeys(ln.split("] ", 1)[-1][:300] for ln in bad))
        return {"lines": len(bad), "distinct": len(distinct), "samples": distinct[:samples]}

    def stop(self) -> None:
        self.process.stop(timeout_s=30)


def pool_size(candidates: dict[str, int], serving_cfg) -> int:
    """Candidates in a response's Home pool before dedupe and filters: the in-network group up to
    its size (its sources' caps), the out-of-network group blended up to `out_of_network_candidates`
    (an upper bound: the blend drops posts two of its sources both proposed)."""
    home, cand = serving_cfg.home, serving_cfg.candidates
    in_net = sum(candidates.get(n, 0) for n in home.in_network_sources)
    in_net_size = sum(cand.source(n).cap for n in home.in_network_sources)
    out_of_network = sum(candidates.get(n, 0) for n in home.out_of_network_sources)
    return min(in_net, in_net_size) + min(out_of_network, home.out_of_network_candidates)


def cpu_seconds() -> tuple[float, float, float]:
    """(wall, busy CPU seconds of the machine, CPU seconds of this process tree): the difference over
    a block is what other processes took from the 2 cores meanwhile."""
    t = psutil.cpu_times()
    busy = t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)
    me = psutil.Process()
    ct = me.cpu_times()
    ours = ct.user + ct.system + ct.children_user + ct.children_system
    for child in me.children(recursive=True):
        try:
            ct = child.cpu_times()
            ours += ct.user + ct.system
        except psutil.Error:
            pass
    return time.perf_counter(), busy, ours


def load(service: BenchService, workspace: Settings, viewers: Path, tag: str, concurrency: int, warmup: int,
         offset: int, duration_s: float | None = None, requests: int | None = None) -> dict:
    """Run the load client in its own process against `service`, cycling through the `viewers`
    file from `offset`; its recorded requests (kept under <workspace>/runs/<tag>.json)."""
    runs = workspace.home / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    out = runs / f"{tag}.json"
    cmd = [sys.executable, "-m", "benchmarks.load_client", "--url", service.url, "--viewers", str(viewers),
           "--out", str(out), "--concurrency", str(concurrency), "--warmup", str(warmup), "--limit", str(LIMIT),
           "--offset", str(offset)]
    cmd += ["--duration", str(duration_s)] if duration_s is not None else ["--requests", str(requests)]
    before = cpu_seconds()
    logged = service.process.log.stat().st_size if service.process.log.exists() else 0
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, env=child_env(workspace))  # its token
    after = cpu_seconds()
    run = json.loads(out.read_text())
    run["workers"], _ = service.worker_split(logged)
    wall = after[0] - before[0]
    run["other_processes_cores"] = round(max((after[1] - before[1]) - (after[2] - before[2]), 0.0) / wall, 2)
    run["bench_cores"] = round((after[2] - before[2]) / wall, 2)
    print(f"  {tag}: {len(run['requests'])} requests in {run['wall_s']:.1f} s, "
          f"p50 {np.percentile([r['ms'] for r in run['requests']], 50):.1f} ms, "
          f"cores used by the bench {run['bench_cores']}, by other processes {run['other_processes_cores']}, "
          f"requests per service worker {run['workers']['requests']}", flush=True)
    return run


@dataclass
class Measured:
    """What the load runs recorded per block, and what the services reported about themselves."""

    fast: list[dict]
    naive: list[dict]
    fast_c1: list[dict]
    naive_c1: list[dict]
    ready_s: dict[str, float]
    rss_mb: dict[str, float]
    log_problems: dict[str, dict]
    impressions_logged: int  # served impression rows both services wrote to the bench's landing folder


def measure(workspace: Settings, config_files: dict[str, Path], viewers: Path, args) -> Measured:
    """Both services up side by side; `args.rounds` alternating blocks (fast for its share of
    `args.duration` after `args.warmup` unrecorded requests, then naive for its share of
    `args.naive_requests`), each block starting elsewhere in the viewer list; then fast, then naive,
    at concurrency 1."""
    impressions = workspace.home / "landing" / "impressions"  # where the services log what they serve
    shutil.rmtree(impressions, ignore_errors=True)
    fast = BenchService.start("fast", workspace, config_files["fast"])
    naive = BenchService.start("naive", workspace, config_files["naive"])
    try:
        ready = {"fast": fast.wait_ready(), "naive": naive.wait_ready()}
        print(f"services ready in {ready} s: fast {fast.url}, naive {naive.url}", flush=True)
        fast_runs, naive_runs = [], []
        per_round_s = args.duration / args.rounds
        per_round_n = max(1, round(args.naive_requests / args.rounds))
        for r in range(args.rounds):
            offset = r * 97
            fast_runs.append(load(fast, workspace, viewers, f"fast_c{args.concurrency}_r{r}", args.concurrency,
                                  args.warmup, offset, duration_s=per_round_s))
            naive_runs.append(load(naive, workspace, viewers, f"naive_c{args.concurrency}_r{r}", args.concurrency,
                                   max(2, args.warmup // 10), offset, requests=per_round_n))
        c1_runs, naive_c1_runs = [], []
        if args.c1_duration > 0:
            c1_runs.append(load(fast, workspace, viewers, "fast_c1", 1, args.warmup, 0, duration_s=args.c1_duration))
        if args.c1_naive_requests > 0:
            naive_c1_runs.append(load(naive, workspace, viewers, "naive_c1", 1, 2, 0,
                                      requests=args.c1_naive_requests))
        rss = {"fast": fast.rss_mb(), "naive": naive.rss_mb()}
        logs = {"fast": fast.log_problems(), "naive": naive.log_problems()}
    finally:
        fast.stop()
        naive.stop()
    logged = 0
    for part in impressions.rglob("*.jsonl") if impressions.exists() else ():
        with open(part, "rb") as fh:
            logged += sum(1 for _ in fh)
    shutil.rmtree(impressions, ignore_errors=True)
    return Measured(fast_runs, naive_runs, c1_runs, naive_c1_runs, ready, rss, logs, logged)
