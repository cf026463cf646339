"""bench-serving: the ranking service under load over HTTP, against the naive path, same run.

    uv run python -m benchmarks.bench_serving [--concurrency 2] [--duration 60] [--naive-requests 150]

Two services run side by side as subprocesses (`python -m serving serve`), each over the same
prepared state of the medium world, and are loaded in turn by a separate client process
(benchmarks/load_client.py: asyncio + aiohttp, closed loop, fixed concurrency) with Home requests
`{"viewer_id": v, "limit": 30}` cycling through sampled viewers whose Home pool is ~1,000
candidates (~500 in-network + 500 Explore):

- fast: serving/config.toml as shipped (packed reader, compiled champion, cascade, 50 ms budget,
  impression logging on), except `record_seen = false` so every request of a viewer (and both
  services) sees the same candidates;
- naive: the same endpoint and pipeline with Feast's `get_online_features` as the hydrator and
  LightGBM's `Booster.predict` (2 threads) scoring every candidate with the full model, no cascade,
  a 10 s budget and generous source / Redis timeouts so it always does the whole work.

The two are measured in alternating blocks (fast, naive, fast, naive, ...) so that the machine's
noise falls on both; then the fast one alone at concurrency 1. Results: benchmarks/results/serving.json.

State (test day T = the world's last day, the service's clock at the end of T, LOUPE_NOW):
- candidates exactly as bench_candidates prepares them: the graph, post sets and Home caches rebuilt
  from the lake through T-1, the day-T posts fanned out by the worker, trending / popular / social
  and the embeddings (index saved where the service loads it) built as of T-1;
- online features: the day-T feature snapshots, which a request at the end of T reads (point in
  time, as training's retrieval does). A full Feast materialize of a medium day took 37 min, nearly
  all of it the ~5M-row viewer_author snapshot, so the benchmark registers with Feast (in its own
  workspace, LOUPE_HOME=<medium>/bench_serving) a copy of the snapshots cut to what the benchmark's
  viewers can read: the viewer_author, viewer and viewer_tags rows of the pre-sampled viewers, and
  all author, post and post_tags rows. Feast materializes that (its own `materialize`), the packed
  view is written from Feast's store (`materialize_packed`, as the feast_online asset does), and a
  parity check (packed reader == get_online_features) runs before any timing. Both services read
  the same online store; no request can touch a row the cut left out (rows are keyed by viewer).
- everything lives in a persistent Valkey under <medium>/bench_serving/redis with a marker key (with
  a TTL below the candidate state's own TTLs), so a second run skips the preparation.

Viewers: active on T (an impression landed on T) whose in-network source (fan-out cache + celebrity
pulls) fills its cap of 500, pre-sampled with a fixed seed; a warm-up pass through the fast service
keeps those whose response reports a ~1,000-candidate pool (>= 970), then a fixed-seed sample of
them is the load's viewer list. Only a few hundred of the ~55k viewers active on T qualify on the
medium world (its mean in-network pool is ~100).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import psutil
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import redis
import tomli_w

from benchmarks.common import PeakRss, write_result
from benchmarks.workspace import bench_settings, ensure_feature_snapshots, ensure_lake
from data import columns as c
from data.redis_server import EmbeddedRedis
from data.settings import REPO_ROOT, Settings, get_settings, serving_secrets

CANDIDATES = 1000
LIMIT = 30
SEED = 20261015
MARKER = "bench:serving:prepared"
CANDIDATES_DONE = "bench:serving:candidates"  # a preparation that failed after the candidates resumes
MARKER_TTL_S = 24 * 3600  # below every candidate key's TTL (trending/popular 48 h, social 2 days, ...)
SERVING_TOML = REPO_ROOT / "serving" / "config.toml"


@dataclass(frozen=True)
class Paths:
    home: Path  # LOUPE_HOME of both services

    @property
    def redis(self) -> Path:
        return self.home / "redis"

    @property
    def state(self) -> Path:
        return self.home / "state.json"

    @property
    def viewers(self) -> Path:
        return self.home / "viewers.json"

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def embeddings(self) -> Path:
        return self.home / "candidates" / "embeddings"


def _now_iso(test_day: str) -> str:
    from features.jobs.inputs import day_end

    return day_end(test_day).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- preparation: candidates ----------------------------------------------------------------------
def prepare_candidates(settings: Settings, client: redis.Redis, cfg, test_day: str, prev: str,
                       paths: Paths) -> tuple[dict, dict]:
    """The candidate state of bench_candidates (rebuild through T-1, fan-out of T, Explore as of
    T-1), plus the embedding index saved where the service loads it."""
    from candidate_gen import events as ev
    from candidate_gen.explore.embeddings import publish_viewer_vectors, save, train_embeddings
    from candidate_gen.explore.social import build_social
    from candidate_gen.explore.trending import build_trending
    from candidate_gen.fanout import FanoutWorker
    from candidate_gen.rebuild import rebuild_all

    seconds, info = {}, {}
    t = time.perf_counter()
    rebuilt = rebuild_all(settings.lake_dir, prev, client, cfg)
    info["rebuild"] = {k: rebuilt[k] for k in ("users", "celebrities", "feeds_built", "feed_posts", "seen_rows")}
    seconds["rebuild"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    fanout = FanoutWorker(client, cfg).consume(ev.lake_day(settings.lake_dir, test_day), test_day).as_metadata()
    info["fanout"] = {k: fanout[k] for k in ("events", "posts", "inserts")}
    seconds["fanout"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    build_trending(settings.lake_dir, prev, client, cfg)
    seconds["trending"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    build_social(settings.lake_dir, prev, client, cfg)
    seconds["social"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    model = train_embeddings(settings.lake_dir, prev, cfg)
    publish_viewer_vectors(model, client, cfg)
    shutil.rmtree(paths.embeddings, ignore_errors=True)
    save(model, paths.embeddings / f"dt={prev}")
    seconds["embeddings"] = round(time.perf_counter() - t, 1)
    return seconds, info


def presample_viewers(settings: Settings, client: redis.Redis, cfg, test_day: str, now_ms: int,
                      n: int) -> tuple[list[int], dict]:
    """Viewers active on T whose in-network source (cache + celebrity pulls) fills its cap, `n` of
    them, fixed seed. The cache size (one ZCOUNT each) only pre-filters whom to read."""
    from candidate_gen.home import HomeCandidateReader
    from candidate_gen.lake_reader import read_days

    active = read_days(settings.lake_dir, "impressions", test_day, test_day, [c.VIEWER_ID])
    active = np.unique(active[c.VIEWER_ID].to_numpy())
    cap = cfg.source("in_network").cap
    oldest = now_ms - cfg.feed.max_age_ms
    pipe = client.pipeline(transaction=False)
    for v in active.tolist():
        pipe.zcount(cfg.keys.feed(v), oldest, "+inf")
    cached = np.asarray(pipe.execute(), dtype=np.int64) - 1  # the built sentinel
    full = active[cached >= int(0.2 * cap)]
    rng = np.random.default_rng(SEED)
    reader = HomeCandidateReader(client, cfg)
    chosen = []
    for v in rng.permutation(full).tolist():
        if len(reader.read(v, now_ms, cap).candidates) >= int(0.95 * cap):
            chosen.append(int(v))
            if len(chosen) >= n:
                break
    info = {"active_on_test_day": int(len(active)), "cache_at_least_20pct_of_cap": int(len(full)),
            "in_network_cap": cap, "presampled": len(chosen)}
    return sorted(chosen), info


# --- preparation: online features -----------------------------------------------------------------
def write_bench_snapshots(lake_dir: Path, bench_lake: Path, day: str, viewers: list[int]) -> dict[str, int]:
    """Copies of the day's snapshots for the bench's Feast repo: viewer-keyed tables cut to
    `viewers`, the others whole."""
    from features.storage import feature_partition_dir
    from features.tables import TABLES

    rows = {}
    ids = np.asarray(viewers, dtype=np.int64)
    for name, table in TABLES.items():
        source = pads.dataset(str(feature_partition_dir(lake_dir, table, day)), format="parquet")
        expr = pc.field(c.VIEWER_ID).isin(ids) if c.VIEWER_ID in table.entities else None
        data = source.to_table(columns=table.columns, filter=expr)
        out = feature_partition_dir(bench_lake, table, day)
        shutil.rmtree(out.parent, ignore_errors=True)
        out.mkdir(parents=True)
        pq.write_table(data, out / "part-00000.parquet")
        rows[name] = data.num_rows
    return rows


def materialize_features(feast_settings: Settings, redis_url: str, day: str, viewers: list[int]) -> tuple[dict, dict]:
    """`feast apply` + Feast materialize + packed view of the bench snapshots (as feast_online),
    then packed reader vs get_online_features on sampled viewers' candidates."""
    from features.jobs.inputs import day_end
    from features.online.packer import materialize_packed
    from features.online.parity import reader_vs_feast
    from features.online.ranking import RankingFeatureReader
    from features.storage import feature_partition_dir
    from features.store import apply, feature_store
    from features.tables import POST, RELATIONSHIP, TABLES

    seconds, info = {}, {}
    shutil.rmtree(feast_settings.home / "feast", ignore_errors=True)
    store = feature_store(feast_settings, redis_url)
    t = time.perf_counter()
    apply(store, feast_settings.lake_dir)
    seconds["feast_apply"] = round(time.perf_counter() - t, 1)
    end = day_end(day)
    packed = {}
    for days in sorted({t.materialize_days for t in TABLES.values()}):
        views = [t.name for t in TABLES.values() if t.materialize_days == days]
        t = time.perf_counter()
        stats = materialize_packed(store, end - timedelta(days=days), end, views)
        seconds[f"materialize_packed_{days}d"] = round(time.perf_counter() - t, 1)
        packed.update({name: s.written for name, s in stats.items()})
    info["packed_rows"] = packed

    # parity: the fast reader equals Feast on 3 x 1,000 candidates of sampled viewers
    rng = np.random.default_rng(SEED)
    pairs = pads.dataset(str(feature_partition_dir(feast_settings.lake_dir, RELATIONSHIP, day))).to_table(
        columns=[c.VIEWER_ID, c.AUTHOR_ID]).to_pandas()
    posts = pads.dataset(str(feature_partition_dir(feast_settings.lake_dir, POST, day))).to_table(
        columns=[c.POST_ID]).to_pandas()[c.POST_ID].to_numpy()
    reader = RankingFeatureReader(store)
    cells, mismatched = 0, []
    t = time.perf_counter()
    for v in rng.choice(viewers, size=3, replace=False):
        authors = pairs.loc[pairs[c.VIEWER_ID] == v, c.AUTHOR_ID].to_numpy()
        authors = np.resize(np.concatenate([authors, rng.choice(pairs[c.AUTHOR_ID].to_numpy(), 10)]), CANDIDATES)
        parity = reader_vs_feast(store, reader, np.full(CANDIDATES, v), authors,
                                 rng.choice(posts, CANDIDATES, replace=False), int(end.timestamp()))
        cells += parity.cells
        mismatched += parity.mismatched[:5]
    seconds["parity_check"] = round(time.perf_counter() - t, 1)
    info["parity"] = {"cells": cells, "mismatched": mismatched[:10]}
    if mismatched:
        raise AssertionError(f"packed reader != get_online_features: {mismatched[:5]}")
    return seconds, info


# --- the services ---------------------------------------------------------------------------------
def write_configs(paths: Paths) -> dict[str, Path]:
    with open(SERVING_TOML, "rb") as f:
        shipped = tomllib.load(f)
    fast = json.loads(json.dumps(shipped))
    fast["impressions"]["record_seen"] = False
    naive = json.loads(json.dumps(fast))
    naive["hydration"]["reader"] = "feast"
    naive["model"].update(engine="lightgbm", threads=2)
    naive["cascade"]["enabled"] = False
    naive["budget"].update(total_ms=10000.0, redis_timeout_ms=2000.0)
    for source in naive["candidates"]["sources"].values():
        source["timeout_ms"] = 2000
    out = {}
    paths.home.mkdir(parents=True, exist_ok=True)
    for name, cfg in (("fast", fast), ("naive", naive)):
        out[name] = paths.home / f"serving_{name}.toml"
        out[name].write_text(tomli_w.dumps(cfg))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`python -m serving serve` in its own process group (killed as a group when done)."""

    def __init__(self, name: str, config: Path, paths: Paths, redis_url: str, tracking_uri: str, now: str):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = paths.home / f"service_{name}.log"
        env = {k: v for k, v in os.environ.items()
               if k not in ("LOUPE_FEAST_REGISTRY", "LOUPE_SERVING_CONFIG", "LOUPE_HOME", "REDIS_URL")}
        env.update(LOUPE_HOME=str(paths.home), REDIS_URL=redis_url, MLFLOW_TRACKING_URI=tracking_uri,
                   LOUPE_NOW=now, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
        # the token the service will check (LOUPE_API_TOKEN, else the one in this LOUPE_HOME)
        self.token = serving_secrets(replace(get_settings(), home=paths.home)).api_token
        self._log = open(self.log, "w")  # noqa: SIM115 - the service's output for its whole life; closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve", "--port", str(self.port), "--config", str(config)],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 900) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} service exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return round(time.perf_counter() - start, 1)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"{self.name} service not ready after {timeout_s} s:\n{self.log_tail()}")

    def home(self, viewer: int, limit: int = LIMIT) -> dict:
        body = json.dumps({"viewer_id": viewer, "limit": limit}).encode()
        req = urllib.request.Request(self.url + "/v1/feed/home", body, {"Content-Type": "application/json",
                                                                         "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def rss_mb(self) -> float:
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
            return round(sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20, 1)
        except psutil.Error:
            return float("nan")

    def log_tail(self, lines: int = 60) -> str:
        self._log.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def log_problems(self, samples: int = 8) -> dict:
        """Warnings, errors and tracebacks in the service's log (not its per-request access lines)."""
        lines = self.log.read_text(errors="replace").splitlines()
        bad = [ln for ln in lines if any(m in ln for m in ("WARNING", "ERROR", "Traceback", "Exception"))]
        distinct = list(dict.fromkeys(ln.split("] ", 1)[-1][:300] for ln in bad))
        return {"lines": len(bad), "distinct": len(distinct), "samples": distinct[:samples]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()


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


# --- responses ------------------------------------------------------------------------------------
def pool_size(candidates: dict[str, int], serving_cfg) -> int:
    """Candidates in the Home pool before dedupe and filters: the in-network group up to its size
    (its sources' caps), the Explore group blended up to `explore_candidates` (an upper bound:
    the blend drops posts two Explore sources both proposed)."""
    home, cand = serving_cfg.home, serving_cfg.candidates
    in_net = sum(candidates.get(n, 0) for n in home.in_network_sources)
    in_net_size = sum(cand.source(n).cap for n in home.in_network_sources)
    explore = sum(candidates.get(n, 0) for n in home.explore_sources)
    return min(in_net, in_net_size) + min(explore, home.explore_candidates)


def select_viewers(service: Service, presampled: list[int], n: int, serving_cfg) -> tuple[list[int], dict]:
    """One request per pre-sampled viewer; keep those whose pool is ~1,000, sample `n` of them."""
    for v in presampled[:10]:  # load the embedding index, build the hydrator, warm the caches
        service.home(v)
    kept, pools, ranked, retried = [], [], [], 0
    for v in presampled:
        resp = service.home(v)
        if any(d.startswith("sources.") for d in resp["degraded"]):
            retried += 1
            resp = service.home(v)
        pool = pool_size(resp["candidates"], serving_cfg)
        pools.append(pool)
        ranked.append(pool - sum(resp["filtered"].values()))
        if pool >= int(0.97 * CANDIDATES) and not any(d.startswith("sources.") for d in resp["degraded"]):
            kept.append(v)
    rng = np.random.default_rng(SEED)
    chosen = sorted(rng.choice(kept, size=min(n, len(kept)), replace=False).tolist())
    rng.shuffle(chosen)  # the load cycles through them in this (fixed) order
    info = {"presampled": len(presampled), "pool_at_least_97pct": len(kept), "chosen": len(chosen),
            "presampled_pool_mean": round(float(np.mean(pools)), 1),
            "presampled_ranked_mean": round(float(np.mean(ranked)), 1), "retried_degraded_sources": retried}
    return [int(v) for v in chosen], info


def load(service: Service, paths: Paths, tag: str, concurrency: int, warmup: int, offset: int,
         duration_s: float | None = None, requests: int | None = None) -> dict:
    """Run the load client in its own process against `service`; its recorded requests."""
    paths.runs.mkdir(parents=True, exist_ok=True)
    out = paths.runs / f"{tag}.json"
    cmd = [sys.executable, "-m", "benchmarks.load_client", "--url", service.url, "--viewers", str(paths.viewers),
           "--out", str(out), "--concurrency", str(concurrency), "--warmup", str(warmup), "--limit", str(LIMIT),
           "--offset", str(offset)]
    cmd += ["--duration", str(duration_s)] if duration_s is not None else ["--requests", str(requests)]
    before = cpu_seconds()
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, env={**os.environ, "LOUPE_HOME": str(paths.home)})  # its token
    after = cpu_seconds()
    run = json.loads(out.read_text())
    wall = after[0] - before[0]
    run["other_processes_cores"] = round(max((after[1] - before[1]) - (after[2] - before[2]), 0.0) / wall, 2)
    run["bench_cores"] = round((after[2] - before[2]) / wall, 2)
    print(f"  {tag}: {len(run['requests'])} requests in {run['wall_s']:.1f} s, "
          f"p50 {np.percentile([r['ms'] for r in run['requests']], 50):.1f} ms, "
          f"cores used by the bench {run['bench_cores']}, by other processes {run['other_processes_cores']}",
          flush=True)
    return run


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


# --- main -----------------------------------------------------------------------------------------
def prepare(settings: Settings, paths: Paths, client: redis.Redis, url: str, serving_cfg, test_day: str,
            prev: str, now: str, tracking_uri: str, configs: dict, args) -> dict:
    from features.jobs.inputs import day_end

    print("preparing the serving state (first run, or the marker expired) ...", flush=True)
    seconds: dict = {}
    info: dict = {}
    done = client.get(CANDIDATES_DONE)
    if done is not None and not args.reprepare and (paths.embeddings / f"dt={prev}" / "meta.json").exists():
        # an earlier preparation got past the candidates and failed later: start from there
        done = json.loads(done)
        seconds, info, presampled = done["seconds"], done["info"], done["presampled"]
        print(f"  candidates: reused from an interrupted preparation ({seconds})", flush=True)
    else:
        client.flushall()
        t = time.perf_counter()
        ensure_feature_snapshots(settings, [prev, test_day])
        seconds["feature_snapshots_check"] = round(time.perf_counter() - t, 1)
        cand_s, info["candidates"] = prepare_candidates(settings, client, serving_cfg.candidates, test_day,
                                                        prev, paths)
        seconds.update({f"candidates_{k}": v for k, v in cand_s.items()})
        print(f"  candidates: {cand_s}", flush=True)
        now_ms = int(day_end(test_day).timestamp() * 1000)
        t = time.perf_counter()
        presampled, info["presample"] = presample_viewers(settings, client, serving_cfg.candidates, test_day,
                                                          now_ms, args.presample)
        seconds["presample_viewers"] = round(time.perf_counter() - t, 1)
        print(f"  viewers: {info['presample']}", flush=True)
        client.set(CANDIDATES_DONE, json.dumps({"seconds": seconds, "info": info, "presampled": presampled}),
                   ex=MARKER_TTL_S)
        client.save()
    shutil.rmtree(paths.lake, ignore_errors=True)
    t = time.perf_counter()
    info["feature_rows"] = write_bench_snapshots(settings.lake_dir, paths.lake, test_day, presampled)
    seconds["bench_snapshots"] = round(time.perf_counter() - t, 1)
    print(f"  bench snapshots: {info['feature_rows']} ({seconds['bench_snapshots']} s)", flush=True)
    feast_settings = replace(settings, home=paths.home, redis_url=url, feast_registry=None)
    feat_s, feat_info = materialize_features(feast_settings, url, test_day, presampled)
    seconds.update(feat_s)
    info.update(feat_info)
    print(f"  features: {feat_s} {feat_info}", flush=True)

    # the warm-up pass that picks the viewers, through the fast service itself
    t = time.perf_counter()
    service = Service("fast", configs["fast"], paths, url, tracking_uri, now)
    try:
        seconds["fast_service_ready"] = service.wait_ready()
        viewers, info["selection"] = select_viewers(service, presampled, args.viewers, serving_cfg)
    finally:
        service.stop()
    seconds["select_viewers"] = round(time.perf_counter() - t, 1)
    print(f"  selection: {info['selection']}", flush=True)
    if not viewers:
        raise RuntimeError("no viewer with a ~1,000-candidate Home pool: see the selection counts above")
    paths.viewers.write_text(json.dumps(viewers))
    state = {"test_day": test_day, "now": now, "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "seconds": seconds, "total_s": round(sum(seconds.values()), 1), **info}
    paths.state.write_text(json.dumps(state, indent=2))
    client.set(MARKER, json.dumps({"test_day": test_day, "viewers": len(viewers)}), ex=MARKER_TTL_S)
    client.save()  # the RDB snapshot a later run starts from
    return state


@dataclass
class PreparedState:
    settings: Settings
    paths: Paths
    server: EmbeddedRedis
    rss: PeakRss
    state: dict
    reused: bool
    viewers: list[int]
    test_day: str
    now: str
    tracking_uri: str
    configs: dict[str, Path]


@contextmanager
def prepared_state(args) -> Iterator[PreparedState]:
    """The medium world's serving state in its persistent Valkey (prepared unless a marker says it
    is ready), the services' configs and the load's viewers; Valkey stops when the block ends.
    `args`: world, reprepare, viewers, presample (bench-serving's and bench-overload's flags)."""
    from serving.config import ServingConfig

    settings = bench_settings(args.world)
    world = ensure_lake(settings)
    test_day, prev = world["days"][-1], world["days"][-2]
    now = _now_iso(test_day)
    paths = Paths(settings.home / "bench_serving")
    paths.home.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{settings.home / 'mlflow.db'}"
    configs = write_configs(paths)
    with EmbeddedRedis(data_dir=paths.redis, persist=True) as server, PeakRss() as rss:
        client = redis.Redis.from_url(server.url)
        # no background snapshots during the run (a fork + ~0.5 GB write mid-measurement); the
        # preparation saves once, explicitly, when it is done
        client.config_set("save", "")
        marker = client.get(MARKER)
        reuse = (marker is not None and not args.reprepare and paths.state.exists() and paths.viewers.exists()
                 and json.loads(marker).get("test_day") == test_day)
        if reuse:
            state = json.loads(paths.state.read_text())
            print(f"serving state reused (prepared {state['prepared_at']}, marker {MARKER} in {paths.redis}); "
                  "skipping preparation (--reprepare to rebuild it)", flush=True)
        else:
            state = prepare(settings, paths, client, server.url, ServingConfig.load(configs["fast"]), test_day,
                            prev, now, tracking_uri, configs, args)
        yield PreparedState(settings, paths, server, rss, state, reuse, json.loads(paths.viewers.read_text()),
                            test_day, now, tracking_uri, configs)


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
    args = parser.parse_args(argv)

    from serving.config import ServingConfig

    started = time.perf_counter()
    with prepared_state(args) as st:
        paths, server, state, reuse, viewers = st.paths, st.server, st.state, st.reused, st.viewers
        test_day, now, tracking_uri, configs, rss = st.test_day, st.now, st.tracking_uri, st.configs, st.rss
        fast_cfg = ServingConfig.load(configs["fast"])
        result: dict = {"world": args.world, "test_day": test_day, "service_now": now,
                        "candidates_per_request": CANDIDATES, "limit": LIMIT, "concurrency": args.concurrency}
        prep_wall = round(time.perf_counter() - started, 1)
        shutil.rmtree(paths.home / "landing" / "impressions", ignore_errors=True)
        fast = Service("fast", configs["fast"], paths, server.url, tracking_uri, now)
        naive = Service("naive", configs["naive"], paths, server.url, tracking_uri, now)
        try:
            ready = {"fast": fast.wait_ready(), "naive": naive.wait_ready()}
            print(f"services ready in {ready} s: fast {fast.url}, naive {naive.url}", flush=True)
            fast_runs, naive_runs = [], []
            per_round_s = args.duration / args.rounds
            per_round_n = max(1, round(args.naive_requests / args.rounds))
            for r in range(args.rounds):
                offset = r * 97  # each block starts elsewhere in the viewer list
                fast_runs.append(load(fast, paths, f"fast_c{args.concurrency}_r{r}", args.concurrency,
                                      args.warmup, offset, duration_s=per_round_s))
                naive_runs.append(load(naive, paths, f"naive_c{args.concurrency}_r{r}", args.concurrency,
                                       max(2, args.warmup // 10), offset, requests=per_round_n))
            c1_runs, naive_c1_runs = [], []
            if args.c1_duration > 0:
                c1_runs.append(load(fast, paths, "fast_c1", 1, args.warmup, 0, duration_s=args.c1_duration))
            if args.c1_naive_requests > 0:
                naive_c1_runs.append(load(naive, paths, "naive_c1", 1, 2, 0, requests=args.c1_naive_requests))
            service_rss = {"fast": fast.rss_mb(), "naive": naive.rss_mb()}
            logs = {"fast": fast.log_problems(), "naive": naive.log_problems()}
        finally:
            fast.stop()
            naive.stop()
        impressions = paths.home / "landing" / "impressions"
        logged = 0  # served impressions the services wrote to the (bench) landing folder
        for part in impressions.rglob("*.jsonl") if impressions.exists() else ():
            with open(part, "rb") as fh:
                logged += sum(1 for _ in fh)
        shutil.rmtree(impressions, ignore_errors=True)

    f = summarize(fast_runs, fast_cfg)
    naive_cfg = ServingConfig.load(configs["naive"])
    n = summarize(naive_runs, naive_cfg)
    f1 = summarize(c1_runs, fast_cfg) if c1_runs else None
    n1 = summarize(naive_c1_runs, naive_cfg) if naive_c1_runs else None
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
    result.update({
        "requests": f["requests"], "p50_ms": f["p50_ms"], "p95_ms": f["p95_ms"], "p99_ms": f["p99_ms"],
        "rps": f["rps"], "errors": f["errors"], "degraded_responses": f["degraded_responses"],
        "naive_p50_ms": n["p50_ms"], "naive_p99_ms": n["p99_ms"],
        "speedup_p50": round(n["p50_ms"] / f["p50_ms"], 1) if f["p50_ms"] and n["p50_ms"] else None,
        "stage_p50_ms": f["stage_p50_ms"],
        "stage_p99_ms": f["stage_p99_ms"],
        "naive_stage_p50_ms": n["stage_p50_ms"],
        "scorer": f["scorer"], "model_version": f["model_version"],
        "candidates_pool_mean": f["candidates_pool_mean"], "candidates_ranked_mean": f["candidates_ranked_mean"],
        "duration_s": f["wall_s"], "viewers": len(viewers),
        "fast": f, "naive": n,
        "fast_model_scored_share": round(f["scorer"].get("compiled", 0) / max(f["requests"], 1), 3),
        "warnings": warnings,
        "fast_concurrency_1": f1,
        "naive_concurrency_1": n1,
        "speedup_p50_concurrency_1": round(n1["p50_ms"] / f1["p50_ms"], 1) if f1 and n1 else None,
        "fast_vs_naive_pages": page_overlap([r for run in (*fast_runs, *c1_runs) for r in run["requests"]],
                                            [r for run in (*naive_runs, *naive_c1_runs) for r in run["requests"]]),
        "impression_rows_logged": logged,  # both services log (same endpoint), warm-ups included
        "impression_rows_expected_at_most": LIMIT * sum(
            len(run["requests"]) + run["warmup"] for run in (*fast_runs, *naive_runs, *c1_runs, *naive_c1_runs)),
        "service_ready_s": ready,
        "service_rss_mb": service_rss,
        "state": {
            "reused": reuse,
            "prepared_at": state["prepared_at"],
            "prep_seconds": state["seconds"],
            "prep_total_s": state["total_s"],
            "this_run_prep_wall_s": prep_wall,
            "candidates": "bench_candidates' state: rebuild_all through T-1, FanoutWorker consumes T, "
                          "trending/popular/social/embeddings as of T-1 (index under LOUPE_HOME/candidates/"
                          "embeddings)",
            "features": "day-T snapshots (event time = end of T = the service's clock), Feast apply + "
                        "materialize + packed view (materialize_packed) of a copy cut to the pre-sampled "
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
            "pool": "candidates_pool = in-network (<= its cap) + Explore blend (<= explore_candidates), "
                    "from the response's per-source counts; ranked = pool - filtered (dedupe + filters)",
        },
        "service_log_problems": logs,
        "peak_rss_mb": rss.peak_mb,
    })
    path = write_result("serving", result)
    print(f"wrote {path}")
    for w in warnings:
        print(f"WARNING: {w}", flush=True)


if __name__ == "__main__":
    main()
