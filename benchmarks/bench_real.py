"""`make bench-real`: Loupe on real public data, and its off-policy evaluation checked twice.

Writes benchmarks/results/real_data.json, one top-level section per function below; a run replaces
the sections it computes and keeps the others, so sections can be added (and re-run) one at a time:

    open_bandit_ope   the Open Bandit Dataset's own benchmark: Bernoulli TS's CTR estimated from the
                      uniform random policy's logs vs BTS's on-policy CTR, relative error per
                      estimator and campaign (training/open_bandit_ope.py)
    simulator_ope     the champion's engagement lift over chronological order, simulated A/B vs OPE
                      from simulated exploring logs at several exploration shares (training/ope_validation.py),
                      through the `training/<surface>/ope` Dagster assets (logged to MLflow loupe/ope)
    open_bandit_platform  the whole platform (`make run-open-bandit`) on the converted Open Bandit
                      landing: rows read / landed / quarantined per log, the training outcome
                      with realised NDCG@10 of the champion vs chronological vs popularity, the
                      train/serve skew check's result, and the served sample page
    simulator_ope_scaling  the same on a world's last day with a declared stand-in ranker (no
                      training): how the intervals narrow with traffic and exploration share
    train_serve_skew  the skew check's mismatch rate per feature on what the service served
                      (medium world, bench-serving's state), as shipped and with the age-unit bug

python -m benchmarks.bench_real [--sections open_bandit_ope,simulator_ope] [--world tiny|small|medium (default)]
The Open Bandit sdist is fetched by the make target into $LOUPE_HOME/open_bandit/; the simulator
section reads the workspace a quality benchmark trained (`python -m benchmarks.bench_quality --world W`,
under $LOUPE_HOME/bench/<W>) and says so when there is none.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, free_port, write_result
from data.importers import open_bandit as obd
from data.settings import Settings, get_settings

AREA = "real_data"


def open_bandit_home(settings: Settings) -> Path:
    return settings.home / "open_bandit"


def open_bandit_ope(settings: Settings) -> dict:
    """Per campaign: on-policy CTR of BTS, its IPS / SNIPS / DR estimates from the random policy's
    rounds with 95 % intervals and relative errors; the mean relative error per estimator."""
    from training.open_bandit_ope import benchmark

    home = open_bandit_home(settings)
    sdist, landing = home / obd.SDIST_NAME, home / "landing"
    start = time.perf_counter()
    summary = obd.convert(sdist, landing)
    campaigns = benchmark(landing, sdist)
    estimators = next(iter(campaigns.values()))["estimates"].keys()
    return {
        "dataset": (f"Open Bandit Dataset sample (obp {obd.VERSION} sdist), ZOZOTOWN, "
                    f"{summary.days[0]}..{summary.days[-1]}"),
        "value": "CTR per slot (one round = one item at one of 3 positions)",
        "ci": "Poisson bootstrap over rounds, percentile 95 %",
        "landing_rows": summary.rows,
        "campaigns": campaigns,
        "mean_relative_error": {e: sum(c["estimates"][e]["relative_error"] for c in campaigns.values()) / len(campaigns)
                                for e in estimators},
        "estimates_covering_on_policy": {e: sum(c["estimates"][e]["covers_on_policy"] for c in campaigns.values())
                                         for e in estimators},
        "wall_s": round(time.perf_counter() - start, 1),
    }


def open_bandit_platform(settings: Settings) -> dict:
    """`make run-open-bandit` in-process on a workspace of its own: what each stage reported."""

    import dagster as dg

    from data.redis_server import redis_endpoint
    from data.settings import export_dagster_env
    from pipelines.operations import prepare_landing
    from pipelines.run import run_platform

    home = open_bandit_home(settings)
    landing = home / "landing"
    obd.convert(home / obd.SDIST_NAME, landing)
    run_settings = Settings(home=home / "platform", landing=landing, source="landing", serve=False,
                            serving_port=free_port(), serving_workers=1)
    export_dagster_env(run_settings)
    start = time.perf_counter()
    with redis_endpoint(None, run_settings.redis_dir, free_port()) as redis_url, \
            dg.DagsterInstance.ephemeral() as instance:
        out = run_platform(run_settings, prepare_landing(run_settings), instance, redis_url)
    training = out["training"]
    surfaces = {}
    for surface, outcome in training.get("surfaces", {}).items():
        if "evaluation" not in outcome:
            surfaces[surface] = {"skipped": outcome.get("skipped")}
            continue
        ev = outcome["evaluation"]
        surfaces[surface] = {
            "requests": ev["requests"],
            "ndcg10_realised": {name: round(m["ndcg10_realised"], 4) for name, m in ev["rankers"].items()},
            "promotion": outcome["decision"],
            "ab_test": outcome["ab_test"].get("skipped", "ran"),
        }
    page = out.get("sample_feed", {}).get("response", {})
    return {
        "days": out["days"],
        "ingest": out["ingest"],
        "training": {"skipped": training["skipped"]} if "skipped" in training else
                    {"test_day": training["test_day"], "surfaces": surfaces,
                     "skew_check": training.get("skew_check", "see the training/examples check in Dagster")},
        "sample_page": {"surface": out.get("sample_feed", {}).get("surface"), "items": len(page.get("items", [])),
                        "model_version": page.get("model_version"), "degraded": page.get("degraded"),
                        "heuristic_reason": page.get("heuristic_reason")},
        "wall_s": round(time.perf_counter() - start, 1),
    }


def simulator_ope(settings: Settings) -> dict:
    """The `training/<surface>/ope` assets on a trained simulated workspace's test day: per surface,
    the A/B's lift and interval, the truth's lift over all sessions, and OPE's per exploration share."""
    import dagster as dg
    import mlflow

    from pipelines.defs.training.ope_assets import ope_assets
    from pipelines.partitions import register_days
    from pipelines.resources import build_resources
    from training import tracking
    from training.config import SURFACE_MODELS

    client = tracking.connect(settings.tracking_uri, str(settings.mlflow_artifact_root))
    champion = tracking.version_by_alias(client, SURFACE_MODELS["home"], tracking.CHAMPION)
    if champion is None:
        return {"skipped": f"no champion in {settings.home}: train one first "
                           f"(python -m benchmarks.bench_quality --world {settings.world})"}
    test_day = champion.tags["test_day"]
    start = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        register_days(instance, [test_day])
        result = dg.materialize(ope_assets, partition_key=test_day, instance=instance,
                                resources=build_resources(settings), raise_on_error=True)
    out: dict = {"world": settings.world, "test_day": test_day, "surfaces": {}}
    for event in result.get_asset_materialization_events():
        surface = event.asset_key.path[1]
        meta = event.materialization.metadata
        if "mlflow_run" not in meta:
            out["surfaces"][surface] = {"skipped": meta["skipped"].value}
            continue
        run_id = meta["mlflow_run"].value
        out["surfaces"][surface] = {"mlflow_run": run_id,
                                    **mlflow.artifacts.load_dict(f"runs:/{run_id}/ope.json")}
    out["wall_s"] = round(time.perf_counter() - start, 1)
    return out


def simulator_ope_scaling(settings: Settings) -> dict:
    """How OPE's interval narrows with traffic, on a simulated world with no training needed: the
    test day's Home sessions (clean, from the truth) ranked by a stand-in for a strong champion —
    the truth's expected value plus Gaussian noise of the same spread, a known, large lift over
    chronological order — then the A/B and OPE from exploring logs, as in `simulator_ope`."""
    import numpy as np
    import pandas as pd

    from data import columns as c
    from data.world import TruthModel, generate_world
    from training.ab_test import simulate
    from training.config import TrainingConfig
    from training.ope_validation import simulated_lift

    start = time.perf_counter()
    truth_dir = settings.truth_dir  # the benchmark world's own truth when it was generated
    if truth_dir is None or not (truth_dir / "meta.json").exists():
        truth_dir = settings.home / "ope_world" / "truth"
        if not (truth_dir / "meta.json").exists():
            generate_world(size=settings.world, seed=settings.seed, landing_dir=truth_dir.parent / "landing",
                           truth_dir=truth_dir)
    truth = TruthModel.load(truth_dir)
    day = sorted(p.stem for p in (truth_dir / "impressions").glob("*.parquet"))[-1]
    imp = pd.read_parquet(truth_dir / "impressions" / f"{day}.parquet",
                          columns=[c.REQUEST_ID, c.VIEWER_ID, c.POST_ID, c.SURFACE, c.TS])
    posts = pd.read_parquet(truth_dir / "posts.parquet", columns=[c.POST_ID, c.CREATED_AT])
    frame = imp[imp[c.SURFACE] == "home"].merge(posts, on=c.POST_ID).reset_index(drop=True)
    frame[c.TS] = pd.to_datetime(frame[c.TS], utc=True)
    frame[c.CREATED_AT] = pd.to_datetime(frame[c.CREATED_AT], utc=True)
    value = truth.expected_value(frame[c.VIEWER_ID].to_numpy(), frame[c.POST_ID].to_numpy(), frame[c.TS])
    scores = value + np.random.default_rng(settings.seed).normal(0, value.std(), len(value))
    cfg = TrainingConfig.load()
    ab = simulate(frame, scores, truth, slots=cfg.ab_slots, treatment_share=cfg.ab_treatment_share, seed=cfg.ab_seed)
    result = simulated_lift(frame, scores, truth, ab, slots=cfg.ab_slots, seed=cfg.ab_seed)
    return {"world": settings.world, "day": day, "surface": "home",
            "ranker": "stand-in: truth expected value + N(0, sd of the values) noise (no training)",
            "requests": int(frame[c.REQUEST_ID].nunique()), "rows": len(frame), **result,
            "wall_s": round(time.perf_counter() - start, 1)}


def train_serve_skew(settings: Settings) -> dict:
    """The skew check on what the service really served (benchmarks/served_skew.py)."""
    from benchmarks.served_skew import measure

    return measure()


SECTIONS = {"open_bandit_ope": open_bandit_ope, "open_bandit_platform": open_bandit_platform,
            "simulator_ope": simulator_ope,
            "simulator_ope_scaling": simulator_ope_scaling,
            "train_serve_skew": train_serve_skew}


def update_result(sections: dict[str, dict]) -> Path:
    """Replace these sections of real_data.json, keep the others (the lead's platform-run sections)."""
    path = RESULTS_DIR / f"{AREA}.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current = {k: v for k, v in current.items() if k not in ("measured_at", "machine")}
    return write_result(AREA, {**current, **sections})


def main(argv: list[str]) -> None:
    from benchmarks.workspace import WORLD, bench_settings

    names = argv[argv.index("--sections") + 1].split(",") if "--sections" in argv else list(SECTIONS)
    unknown = set(names) - set(SECTIONS)
    if unknown:
        sys.exit(f"bench_real: unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    world = argv[argv.index("--world") + 1] if "--world" in argv else WORLD
    settings = get_settings()
    computed = {}
    for name in names:
        print(f"bench-real: {name}", flush=True)
        computed[name] = SECTIONS[name](bench_settings(world) if name.startswith("simulator") else settings)
    update_result(computed)


if __name__ == "__main__":
    main(sys.argv[1:])
