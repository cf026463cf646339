"""The serving benchmarks' state (bench-serving, bench-overload, bench-cascade, bench-real's skew
section): prepared once in a workspace of its own and kept.

State (test day T = the world's last day, the service's clock at the end of T, LOUPE_NOW):
- candidates exactly as bench_candidates prepares them, by the candidate assets
  (pipelines/operations.py prepare_candidate_state): the graph, post sets and Home caches rebuilt from the
  lake through T-1, the day-T posts fanned out by the worker, trending / popular / social and the
  embeddings (index saved where the service loads it) built as of T-1;
- online features: the day-T feature snapshots, which a request at the end of T reads (point in
  time, as training's retrieval does). A full Feast materialize of a medium day took 37 min, nearly
  all of it the ~5M-row viewer_author snapshot, so the benchmark registers with Feast (in its own
  workspace, LOUPE_HOME=<medium>/bench_serving) a copy of the snapshots cut to what the benchmark's
  viewers can read: the viewer_author, viewer and viewer_tags rows of the pre-sampled viewers, and
  all author, post and post_tags rows. Feast's online store and the packed view are written from
  that (`write_window`, as the feast_online asset does: Feast's bytes, without its materialize's
  per-value Python), and a
  parity check (packed reader == get_online_features) runs before any timing. Every service reads
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

import json
import shutil
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import redis
import tomli_w
from mlflow import MlflowClient

from benchmarks.common import PeakRss, stopwatch
from benchmarks.serving_load import BenchService, pool_size
from benchmarks.workspace import bench_settings, ensure_feature_snapshots, ensure_lake
from data import columns as c
from data.days import day_end, day_end_iso, day_end_ms
from data.redis_server import EmbeddedRedis
from data.settings import Settings
from pipelines.defs.candidates.assets import embeddings_dir
from pipelines.defs.candidates.resources import CandidatesDirResource
from pipelines.operations import prepare_candidate_state
from pipelines.resources import build_resources
from serving.config import DEFAULT_PATH as SERVING_TOML
from serving.config import ServingConfig
from training.config import SURFACE_MODELS
from training.tracking import CHAMPION, version_by_alias

CANDIDATES = 1000
SEED = 20261015
MARKER = "bench:serving:prepared"
CANDIDATES_DONE = "bench:serving:candidates"  # a preparation that failed after the candidates resumes
MARKER_TTL_S = 24 * 3600  # below every candidate key's TTL (trending/popular 48 h, social 2 days, ...)
STATE_FILE = "state.json"  # in the workspace's home: how the state was prepared
VIEWERS_FILE = "viewers.json"  # the load's viewers, in the order the load cycles through them


def serving_workspace(medium: Settings) -> Settings:
    """The serving benchmarks' workspace, LOUPE_HOME=<medium>/bench_serving: its own Valkey, feature
    lake (the cut snapshots), Feast repo and embedding index; the champions come from the medium
    workspace's MLflow registry (the ones bench-quality registered)."""
    return medium.with_(home=medium.home / "bench_serving", feast_registry=None,
                   mlflow_tracking_uri=medium.tracking_uri)


def service_clock(test_day: str) -> str:
    """LOUPE_NOW of the services: the end of the test day."""
    return day_end_iso(test_day)


def candidates_dir(workspace: Settings) -> CandidatesDirResource:
    """Where the candidate assets save the embedding index for the services of `workspace`."""
    return CandidatesDirResource(path=str(workspace.home / "candidates"))


# --- candidates -----------------------------------------------------------------------------------
def prepare_candidates(medium: Settings, workspace: Settings, test_day: str, prev: str) -> tuple[dict, dict]:
    """bench_candidates' candidate state in the workspace's Valkey from the medium lake, with the
    embedding index where the services load it."""
    resources = build_resources(medium, workspace.redis_url)
    resources["candidates_dir"] = candidates_dir(workspace)
    shutil.rmtree(embeddings_dir(resources["candidates_dir"], prev).parent, ignore_errors=True)
    with dg.DagsterInstance.ephemeral() as instance:
        state = prepare_candidate_state(resources, instance, test_day, prev, explore_day=prev)
    rebuilt, fanout = state.metadata["candidates/rebuild"], state.metadata["candidates/fanout"]
    info = {"rebuild": {k: rebuilt[k] for k in ("users", "celebrities", "feeds_built", "feed_posts", "seen_rows")},
            "fanout": {k: fanout[k] for k in ("events", "posts", "inserts")}}
    return {asset.removeprefix("candidates/"): s for asset, s in state.seconds.items()}, info


def presample_viewers(medium: Settings, client: redis.Redis, cfg, test_day: str, now_ms: int,
                      n: int) -> tuple[list[int], dict]:
    """Viewers active on T whose in-network source (cache + celebrity pulls) fills its cap, `n` of
    them, fixed seed. The cache size (one ZCOUNT each) only pre-filters whom to read."""
    from candidate_gen.home import HomeCandidateReader
    from candidate_gen.lake_reader import read_days

    active = read_days(medium.lake_dir, "impressions", test_day, test_day, [c.VIEWER_ID])
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


# --- online features ------------------------------------------------------------------------------
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


def materialize_features(workspace: Settings, day: str, viewers: list[int]) -> tuple[dict, dict]:
    """`feast apply` + Feast's online store + packed view of the bench snapshots (as feast_online),
    then the parity check."""
    from features.online.bulk_write import write_window
    from features.store import apply, feature_store
    from features.tables import TABLES

    seconds, info = {}, {}
    shutil.rmtree(workspace.home / "feast", ignore_errors=True)
    store = feature_store(workspace, workspace.redis_url)
    with stopwatch(seconds, "feast_apply"):
        apply(store, workspace.lake_dir)
    end = day_end(day)
    packed = {}
    for days in sorted({t.materialize_days for t in TABLES.values()}):
        views = [t.name for t in TABLES.values() if t.materialize_days == days]
        with stopwatch(seconds, f"write_online_{days}d"):
            stats = write_window(store, end - timedelta(days=days), end, views)
        packed.update({name: s.written for name, s in stats.items()})
    info["packed_rows"] = packed
    with stopwatch(seconds, "parity_check"):
        info["parity"] = check_parity(store, workspace.lake_dir, day, viewers)
    return seconds, info


def check_parity(store, lake_dir: Path, day: str, viewers: list[int]) -> dict:
    """The packed reader equals Feast's get_online_features on 3 x 1,000 candidates of sampled
    viewers (raises if not): cells compared, mismatches."""
    from features.online.parity import reader_vs_feast
    from features.online.ranking import RankingFeatureReader
    from features.storage import feature_partition_dir
    from features.tables import POST, RELATIONSHIP

    rng = np.random.default_rng(SEED)
    pairs = pads.dataset(str(feature_partition_dir(lake_dir, RELATIONSHIP, day))).to_table(
        columns=[c.VIEWER_ID, c.AUTHOR_ID]).to_pandas()
    posts = pads.dataset(str(feature_partition_dir(lake_dir, POST, day))).to_table(
        columns=[c.POST_ID]).to_pandas()[c.POST_ID].to_numpy()
    reader = RankingFeatureReader(store)
    at = int(day_end(day).timestamp())
    cells, mismatched = 0, []
    for v in rng.choice(viewers, size=3, replace=False):
        authors = pairs.loc[pairs[c.VIEWER_ID] == v, c.AUTHOR_ID].to_numpy()
        authors = np.resize(np.concatenate([authors, rng.choice(pairs[c.AUTHOR_ID].to_numpy(), 10)]), CANDIDATES)
        parity = reader_vs_feast(store, reader, np.full(CANDIDATES, v), authors,
                                 rng.choice(posts, CANDIDATES, replace=False), at)
        cells += parity.cells
        mismatched += parity.mismatched[:5]
    if mismatched:
        raise AssertionError(f"packed reader != get_online_features: {mismatched[:5]}")
    return {"cells": cells, "mismatched": mismatched[:10]}


# --- the services' configs and viewers ------------------------------------------------------------
def write_configs(home: Path) -> dict[str, Path]:
    """The fast service's config (serving/config.toml as shipped, the seen set left alone so every
    request of a viewer sees the same candidates) and the naive one's, under `home`."""
    with open(SERVING_TOML, "rb") as f:
        shipped = tomllib.load(f)
    fast = json.loads(json.dumps(shipped))
    fast["impressions"]["record_seen"] = False
    naive = json.loads(json.dumps(fast))
    naive["hydration"]["reader"] = "feast"
    naive["model"].update(engine="lightgbm", threads=2)
    naive["cascade"]["enabled"] = False
    naive["budget"].update(total_ms=10000.0, redis_timeout_ms=2000.0)
    # the naive path always does the whole work: a request waits for its worker, never the cheap path
    naive["admission"].update(max_wait_ms=10000.0, queue_ms=10000.0)
    for source in naive["candidates"]["sources"].values():
        source["timeout_ms"] = 2000
    out = {}
    home.mkdir(parents=True, exist_ok=True)
    for name, cfg in (("fast", fast), ("naive", naive)):
        out[name] = home / f"serving_{name}.toml"
        out[name].write_text(tomli_w.dumps(cfg))
    return out


def select_viewers(service: BenchService, presampled: list[int], n: int, serving_cfg) -> tuple[list[int], dict]:
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


# --- preparing it all -----------------------------------------------------------------------------
def prepare(medium: Settings, workspace: Settings, client: redis.Redis, test_day: str, prev: str,
            config_files: dict[str, Path], args) -> dict:
    """Candidates, pre-sampled viewers, online features, then the viewers picked through the fast
    service; the record written to STATE_FILE (a preparation that got past the candidates resumes
    from there)."""
    print("preparing the serving state (first run, or the marker expired) ...", flush=True)
    serving_cfg = ServingConfig.load(config_files["fast"])
    seconds: dict = {}
    info: dict = {}
    done = client.get(CANDIDATES_DONE)
    index = embeddings_dir(candidates_dir(workspace), prev)
    if done is not None and not args.reprepare and (index / "meta.json").exists():
        # an earlier preparation got past the candidates and failed later: start from there
        done = json.loads(done)
        seconds, info, presampled = done["seconds"], done["info"], done["presampled"]
        print(f"  candidates: reused from an interrupted preparation ({seconds})", flush=True)
    else:
        client.flushall()
        with stopwatch(seconds, "feature_snapshots_check"):
            ensure_feature_snapshots(medium, [prev, test_day])
        cand_s, info["candidates"] = prepare_candidates(medium, workspace, test_day, prev)
        seconds.update({f"candidates_{k}": v for k, v in cand_s.items()})
        print(f"  candidates: {cand_s}", flush=True)
        now_ms = day_end_ms(test_day)
        with stopwatch(seconds, "presample_viewers"):
            presampled, info["presample"] = presample_viewers(medium, client, serving_cfg.candidates, test_day,
                                                              now_ms, args.presample)
        print(f"  viewers: {info['presample']}", flush=True)
        client.set(CANDIDATES_DONE, json.dumps({"seconds": seconds, "info": info, "presampled": presampled}),
                   ex=MARKER_TTL_S)
        client.save()
    shutil.rmtree(workspace.lake_dir, ignore_errors=True)
    with stopwatch(seconds, "bench_snapshots"):
        info["feature_rows"] = write_bench_snapshots(medium.lake_dir, workspace.lake_dir, test_day, presampled)
    print(f"  bench snapshots: {info['feature_rows']} ({seconds['bench_snapshots']} s)", flush=True)
    feat_s, feat_info = materialize_features(workspace, test_day, presampled)
    seconds.update(feat_s)
    info.update(feat_info)
    print(f"  features: {feat_s} {feat_info}", flush=True)

    # the warm-up pass that picks the viewers, through the fast service itself
    with stopwatch(seconds, "select_viewers"):
        service = BenchService.start("fast", workspace, config_files["fast"])
        try:
            seconds["fast_service_ready"] = service.wait_ready()
            viewers, info["selection"] = select_viewers(service, presampled, args.viewers, serving_cfg)
        finally:
            service.stop()
    print(f"  selection: {info['selection']}", flush=True)
    if not viewers:
        raise RuntimeError("no viewer with a ~1,000-candidate Home pool: see the selection counts above")
    (workspace.home / VIEWERS_FILE).write_text(json.dumps(viewers))
    state = {"test_day": test_day, "now": workspace.now,
             "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "seconds": seconds, "total_s": round(sum(seconds.values()), 1), **info}
    (workspace.home / STATE_FILE).write_text(json.dumps(state, indent=2))
    client.set(MARKER, json.dumps({"test_day": test_day, "viewers": len(viewers)}), ex=MARKER_TTL_S)
    client.save()  # the RDB snapshot a later run starts from
    return state


@dataclass
class PreparedState:
    medium: Settings  # the benchmark world's workspace (its lake, its MLflow registry)
    workspace: Settings  # the services': <medium>/bench_serving, its Valkey running, clock at the end of T
    test_day: str
    viewers: list[int]
    config_files: dict[str, Path]  # fast, naive
    state: dict  # STATE_FILE: how and when the state was prepared
    reused: bool
    rss: PeakRss

    @property
    def viewers_file(self) -> Path:
        return self.workspace.home / VIEWERS_FILE


def require_champions(medium: Settings) -> None:
    """Stop before any preparation when a surface has no champion to serve: every page would be
    ranked by the heuristic, and nothing of the model path would be measured."""
    client = MlflowClient(medium.tracking_uri)
    missing = [name for name in SURFACE_MODELS.values() if version_by_alias(client, name, CHAMPION) is None]
    if missing:
        raise SystemExit(f"no {', '.join(f'{m}@{CHAMPION}' for m in missing)} in {medium.tracking_uri}: "
                         "`make bench-quality` trains and promotes the benchmark world's rankers; run it first")


@contextmanager
def prepared_state(args) -> Iterator[PreparedState]:
    """The medium world's serving state in its persistent Valkey (prepared unless a marker says it
    is ready), the services' configs and the load's viewers; Valkey stops when the block ends.
    `args`: world, reprepare, viewers, presample (bench-serving's and bench-overload's flags)."""
    medium = bench_settings(args.world)
    world = ensure_lake(medium)
    require_champions(medium)
    test_day, prev = world["days"][-1], world["days"][-2]
    workspace = serving_workspace(medium).with_(now=service_clock(test_day))
    config_files = write_configs(workspace.home)
    state_file, viewers_file = workspace.home / STATE_FILE, workspace.home / VIEWERS_FILE
    with EmbeddedRedis(data_dir=workspace.redis_dir, persist=True) as server, PeakRss() as rss:
        workspace = workspace.with_(redis_url=server.url)
        client = redis.Redis.from_url(server.url)
        # no background snapshots during the run (a fork + ~0.5 GB write mid-measurement); the
        # preparation saves once, explicitly, when it is done
        client.config_set("save", "")
        marker = client.get(MARKER)
        reuse = (marker is not None and not args.reprepare and state_file.exists() and viewers_file.exists()
                 and json.loads(marker).get("test_day") == test_day)
        if reuse:
            state = json.loads(state_file.read_text())
            print(f"serving state reused (prepared {state['prepared_at']}, marker {MARKER} in "
                  f"{workspace.redis_dir}); skipping preparation (--reprepare to rebuild it)", flush=True)
        else:
            state = prepare(medium, workspace, client, test_day, prev, config_files, args)
        yield PreparedState(medium, workspace, test_day, json.loads(viewers_file.read_text()), config_files,
                            state, reuse, rss)
