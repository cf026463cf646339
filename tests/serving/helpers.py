"""Shared by the serving tests: small real LightGBM rankers, a real MLflow registry, the app wired to
a test's own Valkey and key prefix, and a synthetic social world written by the real fan-out worker."""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import redis

from candidate_gen import events as ev
from candidate_gen.fanout import FanoutWorker
from features.services import SERVICE_V1
from serving.app import RankingApp
from serving.clock import Clock
from serving.config import DEFAULT_PATH, ServingConfig, _merged
from serving.model_store import ModelStore, registry_loader, registry_lookup
from serving.stages.lazy_hydrator import LazyHydrator
from tests.candidates.helpers import HOUR, T0
from training import tracking
from training.models import LAMBDARANK, VALUE_MODEL, Ranker


def random_ranker(names: list[str], kind: str = VALUE_MODEL, seed: int = 1, trees: int = 30) -> Ranker:
    """A real (tiny) ranker over `names`: learnt on random rows where the first features matter."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, len(names))).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1 % len(names)]) + rng.normal(size=len(x))
    params = {"num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": seed, "min_data_in_leaf": 20}
    if kind == LAMBDARANK:
        data = lgb.Dataset(x, np.digitize(signal, [-1, 0, 1]), group=[20] * 100)
        boosters = {LAMBDARANK: lgb.train({**params, "objective": "lambdarank"}, data, trees)}
        return Ranker(LAMBDARANK, list(names), boosters)
    heads = {}
    for head, flip in (("like", 1.0), ("negative", -1.0)):
        labels = (flip * signal > 1).astype(int)
        heads[head] = lgb.train({**params, "objective": "binary"}, lgb.Dataset(x, labels), trees)
    return Ranker(VALUE_MODEL, list(names), heads, weights={"like": 1.0, "negative": -5.0})


def register_champion(tracking_uri: str, artifact_root: Path, surface: str, model_name: str, ranker: Ranker,
                      feature_service: str = SERVICE_V1) -> str:
    """Log the ranker as a run, register it, point `champion` at it; returns the version."""
    version = register_challenger(tracking_uri, artifact_root, surface, model_name, ranker, feature_service)
    tracking.promote(tracking.connect(tracking_uri, str(artifact_root)), model_name, version)
    return version


def register_challenger(tracking_uri: str, artifact_root: Path, surface: str, model_name: str,
                        ranker: Ranker, feature_service: str = SERVICE_V1) -> str:
    """Log the ranker as a run and register it, which points `challenger` at it; returns the version."""
    client = tracking.connect(tracking_uri, str(artifact_root))
    example = pd.DataFrame(np.zeros((3, len(ranker.feature_names)), dtype=np.float32), columns=ranker.feature_names)
    run_id = tracking.log_ranker_run(surface=surface, ranker=ranker, params={}, days={"test": ["2026-10-14"]},
                                     valid_ndcg10=0.5, input_example=example, feature_service=feature_service)
    return str(tracking.register(client, model_name, run_id, {}).version)


def model_store(tracking_uri: str, artifact_root: Path, cfg: ServingConfig, compile_dir: Path,
                faults: dict[str, Exception] | None = None, **store) -> ModelStore:
    """The store on a real registry. `faults` (the caller's dict, changed as the test goes): while it
    holds "lookup" or "load", the registry's lookup or the model's loading raises that exception.
    `store`: ModelStore's own keywords (`targets`, `role`: an experiment's treatment store)."""
    client = tracking.connect(tracking_uri, str(artifact_root))
    faults = {} if faults is None else faults
    lookup, loader = registry_lookup(client), registry_loader(client)

    def faulty_lookup(ref):
        if "lookup" in faults:
            raise faults["lookup"]
        return lookup(ref)

    def faulty_loader(name, version):
        if "load" in faults:
            raise faults["load"]
        return loader(name, version)

    return ModelStore(faulty_lookup, faulty_loader, cfg.model, cfg.cascade, compile_dir, **store)


def no_features() -> LazyHydrator:
    """A hydrator whose feature store cannot be reached (the scorer then serves the heuristic)."""

    def unreachable():
        raise ConnectionError("no feature store in this test")

    return LazyHydrator(unreachable, retry_s=3600)


# Tests assert what a request returns, not how fast: on a busy CI machine a 20 ms source timeout or
# a 50 ms budget runs out with no fault at all. Tests of a timeout inject the stall themselves (a
# paused Redis, a model that blocks) and set the budget they test.
PATIENT_MS = 60_000.0


def patient(cfg: ServingConfig, ms: float = PATIENT_MS) -> ServingConfig:
    """`cfg` with the request budget, Redis socket timeouts and every source's timeout at `ms`, and
    no overload cheap path (requests queue on a busy machine; tests of admission set it)."""
    cfg = cfg.with_("budget", total_ms=ms, redis_timeout_ms=ms, filters_timeout_ms=ms)
    cfg = cfg.with_("admission", max_wait_ms=ms, max_in_flight=10_000, cheap_budget_ms=ms)
    return cfg.model_copy(update={"candidates": cfg.candidates.with_timeouts(ms)})


def serving_config(candidates: dict | None = None, **sections) -> ServingConfig:
    """The shipped config with a test's own key prefix, candidate settings merged over it (the
    popular source's 30 s cache off: worlds change between requests here), no exploration share
    (pages in score order; tests of exploration set it), patient timeouts (above) and sections
    changed."""
    with open(DEFAULT_PATH, "rb") as f:
        raw = tomllib.load(f)
    raw["exploration"] = {"share": 0.0}
    own = {"feed": {"key_prefix": f"t{uuid.uuid4().hex[:8]}:"}, "popular": {"cache_ms": 0}}
    raw["candidates"] = _merged(_merged(raw.get("candidates", {}), own), candidates or {})
    cfg = patient(ServingConfig.from_dict(raw))
    for section, changes in sections.items():
        cfg = cfg.with_(section, **changes)
    return cfg


def build_app(client: redis.Redis, cfg: ServingConfig, models: ModelStore, hydrator=None, impressions=None,
              now_ms: int = T0 + 10 * HOUR, treatment_models: ModelStore | None = None,
              search_index=None) -> RankingApp:
    app = RankingApp.build(cfg, candidates_client=client, hydrator=hydrator or no_features(), models=models,
                           clock=Clock(now_ms), impressions=impressions, treatment_models=treatment_models,
                           search_index=search_index)
    for store in app.arms.stores:
        store.refresh()
    app.warm = True  # tests call the pipelines directly; the startup warm-up is for real traffic
    return app


def write_world(client: redis.Redis, cfg, rows: list[tuple]) -> None:
    """Events (ts_ms, kind, a, b, x) through the real fan-out worker; accounts first."""
    FanoutWorker(client, cfg.candidates).consume(ev.frame(rows), None)


def social_world(n_users: int = 12, posts_per_user: int = 6) -> list[tuple]:
    """Users 1..n; everyone follows the next five; each posts a few times over the last hours."""
    rows = [(T0 - 100 * HOUR, "user", u, 0, 0) for u in range(1, n_users + 1)]
    for u in range(1, n_users + 1):
        for k in range(1, 6):
            rows.append((T0 - 50 * HOUR, "follow", u, (u + k - 1) % n_users + 1, 0))
    post = 1000
    for u in range(1, n_users + 1):
        for k in range(posts_per_user):
            rows.append((T0 + k * HOUR // 2 + u, "post", post, u, T0 + k * HOUR // 2 + u))
            post += 1
    return rows


def explore_sets(client: redis.Redis, cfg, posts: list[tuple[int, int]]) -> None:
    """What the daily builders leave: trending and popular sets over these (post, author) pairs."""
    keys = cfg.candidates.keys
    members = {b"%d:%d" % (p, a): float(len(posts) - i) for i, (p, a) in enumerate(posts)}
    client.zadd(keys.trending, members)
    client.zadd(keys.popular, members)
