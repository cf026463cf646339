"""`make bench-quality`: ranking quality on the medium world's last day, every ranker and baseline
on the same candidates, through the same Dagster assets `make run` uses, into a fresh MLflow
store (so the challenger is promoted and the simulated A/B runs).

The rankers train on the feature service training/config.toml names (feed_ranker_v2: the daily
and the real-time views). Beside them, the same rankers are trained on the same training sets
without the real-time views' columns (feed_ranker_v1's features) and judged on the same test day:
what the streaming features add.

Writes benchmarks/results/ranking_quality.json; `--world small` prints instead (a smoke run).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time

import dagster as dg

from benchmarks.common import RESULTS_DIR, PeakRss, write_result
from benchmarks.workspace import WORLD, bench_settings, ensure_feature_snapshots, ensure_lake
from data.redis_server import redis_endpoint
from data.world import TruthModel
from features.services import SERVICE_V1
from pipelines.defs.features.assets import feast_registry
from pipelines.operations import QUIET, train_and_promote
from pipelines.resources import build_resources
from pipelines.summary import format_metrics_table
from training.config import SURFACE_MODELS
from training.evaluate import attach_truth, evaluate
from training.heads import value_heads
from training.train import choose_challenger, load_split, train_rankers

BASELINES = ("chronological", "popularity", "affinity", "random", "oracle")


def json_safe(value):
    """NaN (e.g. NDCG of a segment without ranked lists) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def surface_summary(s: dict) -> dict:
    ev = s["evaluation"]
    model = ev["challenger_kind"]
    rankers = ev["rankers"]
    return {
        "model": model,
        "requests": ev["requests"],
        "rows": ev["rows"],
        "ndcg10": {"model": rankers[model]["ndcg10"], **{b: rankers[b]["ndcg10"] for b in BASELINES}},
        "ndcg50": {"model": rankers[model]["ndcg50"], **{b: rankers[b]["ndcg50"] for b in BASELINES}},
        "ndcg10_realised": {"model": rankers[model]["ndcg10_realised"],
                            **{b: rankers[b]["ndcg10_realised"] for b in BASELINES}},
        "map": {"model": rankers[model]["map"], **{b: rankers[b]["map"] for b in BASELINES}},
        "all_rankers_ndcg10": {n: m["ndcg10"] for n, m in rankers.items()},
        "pct_of_oracle": ev["pct_of_oracle"],
        "lift_vs_chronological_pct": ev["lift_vs_chronological_pct"],
        "auc": {h: m["auc"] for h, m in ev["heads"].get("value_model", {}).items()},
        "logloss": {h: m["logloss"] for h, m in ev["heads"].get("value_model", {}).items()},
        "ece": {h: m["calibration"]["ece"] for h, m in ev["heads"].get("value_model", {}).items()},
        "segments_ndcg10": {seg: {"model": v[model], "chronological": v["chronological"], "rows": v["rows"]}
                            for seg, v in ev["segments"].items()},
        "promotion": s["decision"],
        "ab_test": s["ab_test"],
    }


def ablation(settings, cfg, heads, test_day: str, truth: TruthModel) -> dict:
    """Per surface: the rankers trained on the same examples with `cfg` (the shipped one with a
    part left out), the better on the validation day judged on the test day."""
    out = {}
    for surface in SURFACE_MODELS:
        split = load_split(settings.lake_dir, surface, test_day, cfg)
        trained = train_rankers(split, cfg, heads)
        kind, _ = choose_challenger(trained.rankers, split.valid)
        report = evaluate(attach_truth(split.test, truth), trained.rankers, kind, seed=cfg.seed)
        out[surface] = {"model": kind, "features": len(split.features),
                        "ndcg10": report["rankers"][kind]["ndcg10"], "pct_of_oracle": report.get("pct_of_oracle"),
                        "lift_vs_chronological_pct": report["lift_vs_chronological_pct"],
                        "segments_ndcg10": {seg: {"model": v[kind], "rows": v["rows"]}
                                            for seg, v in report["segments"].items()}}
    return out


def live_ab() -> dict | None:
    """v2 against v1 served live (make bench-live's last run, tiny world: a live A/B needs the
    service, the stream and simulated users, which this bench does not start)."""
    path = RESULTS_DIR / "live_loop.json"
    if not path.exists():
        return None
    run = json.loads(path.read_text())
    ab = run["v2_vs_v1_live"]
    return {"source": f"benchmarks/results/{path.name} (make bench-live, {run['world']} world, "
                      f"{run['measured_at']})", "control": ab["control"], "treatment": ab["treatment"],
            "sessions": ab["sessions"], "treatment_vs_control": ab["treatment_vs_control"],
            "sample_ratio_p": ab["sample_ratio_p"]}


def main(argv: list[str]) -> None:
    world = argv[argv.index("--world") + 1] if "--world" in argv else WORLD
    settings = bench_settings(world)
    summary = ensure_lake(settings)
    days = summary["days"]
    resources = build_resources(settings)
    cfg = resources["training_config"].load()
    window = days[-(cfg.train_days + 2):]
    # Daily tables are needed up to T-1; creation-stamped ones (post_tags) on T itself too.
    ensure_feature_snapshots(settings, [d for d in days if d <= window[-1]][-(cfg.train_days + 3):])
    # A fresh tracking store: the bench measures one challenger against no champion.
    shutil.rmtree(settings.mlflow_artifact_root, ignore_errors=True)
    (settings.home / "mlflow.db").unlink(missing_ok=True)
    with redis_endpoint(None, settings.redis_dir, settings.embedded_redis_port + 7) as redis_url, \
            dg.DagsterInstance.ephemeral() as instance, PeakRss() as rss:
        resources = build_resources(settings, redis_url)
        dg.materialize([feast_registry], instance=instance, resources=resources, run_config=QUIET)
        start = time.perf_counter()
        training = train_and_promote(settings, days, instance, resources=resources)
        wall = time.perf_counter() - start
        start = time.perf_counter()
        heads, truth = value_heads(resources["workspace"].vocabulary(), cfg), resources["workspace"].truth_model()
        # the same rankers without the real-time views' columns (feed_ranker_v1's), and without
        # the position debiasing
        without = {"streaming_features": cfg.model_copy(update={"feature_service": SERVICE_V1}),
                   "position_debias": cfg.model_copy(update={"position_debiased": False})}
        ablations = {name: ablation(settings, variant, heads, training["test_day"], truth)
                     for name, variant in without.items()}
        ablation_wall = time.perf_counter() - start
    print(format_metrics_table(training))
    sec = training["seconds"]
    result = {
        "world": world,
        "test_day": training["test_day"],
        "days": training["surfaces"]["home"]["evaluation"]["days"],
        "config": {"train_days": cfg.train_days, "max_requests_per_day": cfg.max_requests_per_day,
                   "position_debiased": cfg.position_debiased},
        "feature_service": cfg.feature_service,
        **{surface: surface_summary(s) for surface, s in training["surfaces"].items()},
        "without_streaming_features": ablations["streaming_features"],
        "without_position_debias": ablations["position_debias"],
        "live_ab_v2_vs_v1": live_ab(),
        "ab_lift_pct": training["surfaces"]["home"]["ab_test"].get("engagements", {}).get("lift_pct"),
        "ab_lift_ci95_pct": training["surfaces"]["home"]["ab_test"].get("engagements", {}).get("ci95_pct"),
        "train_wall_s": round(sum(v for k, v in sec.items() if k.endswith("/rankers")), 1),
        "examples_wall_s": sec.get("training/examples"),
        "seconds": sec,
        "wall_s": round(wall, 1),
        "ablations_wall_s": round(ablation_wall, 1),
        "peak_rss_mb": rss.peak_mb,
    }
    if world == WORLD:
        write_result("ranking_quality", json_safe(result))
    else:
        print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
