"""`make run`: the main job on embedded defaults, end to end.

1. generate the simulated world into the landing folder (skipped when that world is already there)
2. ingest every landing day into the lake through the Dagster assets (runs show in the Dagster UI)
3. compute every day's feature snapshots (Spark), `feast apply`, materialize the last day into the
   Redis online store (+ the packed view the ranking service reads)
4. print rows per log, quarantined rows per reason, feature rows per table
5. with LOUPE_SERVE=1, keep the Dagster UI up until Ctrl-C  (`python -m pipelines.run ui`: only that)

Redis is the configured REDIS_URL or an embedded Valkey server kept under LOUPE_HOME/redis.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import dagster as dg

from data.contracts import LOG_TYPES
from data.redis_server import redis_endpoint
from data.settings import Settings, export_dagster_env, get_settings
from data.world import WorldSummary, generate_world
from pipelines.defs.features.assets import feast_online, feast_registry, feature_assets
from pipelines.defs.ingest.assets import ingest_assets
from pipelines.resources import build_resources

DAGSTER_PORT = 3000
# The console shows our summary; step-by-step events stay in the Dagster UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _world_marker(settings: Settings) -> Path:
    return settings.home / "world.json"


def prepare_world(settings: Settings) -> dict:
    """Generate the configured world unless the landing folder already holds exactly it."""
    marker = _world_marker(settings)
    if marker.exists():
        summary = json.loads(marker.read_text())
        if (summary["size"], summary["seed"]) == (settings.world, settings.seed):
            print(f"world {settings.world} (seed {settings.seed}) already landed; reusing it")
            return summary
    # A different world: its landing files, lake and truth would mix with the new one's.
    for folder in (settings.landing_dir, settings.lake_dir, settings.truth_dir):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"generating the {settings.world} world (seed {settings.seed}) ...", flush=True)
    summary: WorldSummary = generate_world(
        size=settings.world,
        seed=settings.seed,
        landing_dir=settings.landing_dir,
        truth_dir=settings.truth_dir,
    )
    data = summary.to_dict()
    settings.home.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(data, indent=2))
    return data


def ingest_days(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None
) -> dict[str, dict]:
    """Materialize every ingest asset for each day; returns summed metadata per log type."""
    totals: dict[str, dict] = {log: defaultdict(int) for log in LOG_TYPES}
    reasons: dict[str, Counter] = {log: Counter() for log in LOG_TYPES}
    resources = build_resources(settings, redis_url)
    for day in days:
        result = dg.materialize(
            ingest_assets, partition_key=day, instance=instance, resources=resources, run_config=QUIET
        )
        for event in result.get_asset_materialization_events():
            log = event.asset_key.path[-1]
            meta = {k: v.value for k, v in event.materialization.metadata.items()}
            for name in ("rows_read", "rows_landed", "rows_quarantined", "duplicates_dropped"):
                totals[log][name] += meta[name]
            reasons[log].update(meta["quarantined_by_reason"])
        print(f"  ingested {day}", flush=True)
    return {log: {**totals[log], "quarantined_by_reason": dict(reasons[log])} for log in LOG_TYPES}


def build_features(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None
) -> dict:
    """Feature snapshots for every day, then Feast apply and the last day online.

    Only the newest day is materialized: the online store serves the latest snapshot, and the
    offline store keeps every day for point-in-time training sets.
    """
    resources = build_resources(settings, redis_url)
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    for day in days:
        result = dg.materialize(feature_assets, partition_key=day, instance=instance,
                                resources=resources, run_config=QUIET)
        for event in result.get_asset_materialization_events():
            rows[event.asset_key.to_user_string()] = event.materialization.metadata["dagster/row_count"].value
        for step in result.get_step_success_events():
            name = step.step_key.replace("features__", "features/")
            seconds[name] = seconds.get(name, 0.0) + step.event_specific_data.duration_ms / 1000
        print(f"  features {day}", flush=True)
    for assets, partition in (([feast_registry], None), ([feast_online], days[-1])):
        start = time.perf_counter()
        result = dg.materialize(assets, partition_key=partition, instance=instance,
                                resources=resources, run_config=QUIET)
        seconds[assets[0].key.to_user_string()] = time.perf_counter() - start
        for check in result.get_asset_check_evaluations():
            print(f"  check {check.asset_key.to_user_string()}:{check.check_name} "
                  f"{'passed' if check.passed else 'FAILED'}")
    return {"rows_last_day": rows, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def format_ingest_table(totals: dict[str, dict]) -> str:
    head = f"{'log':<12}{'read':>12}{'landed':>12}{'quarantined':>13}{'duplicates':>12}"
    lines = [head, "-" * len(head)]
    for log, t in totals.items():
        lines.append(
            f"{log:<12}{t['rows_read']:>12,}{t['rows_landed']:>12,}"
            f"{t['rows_quarantined']:>13,}{t['duplicates_dropped']:>12,}"
        )
    lines += ["", "quarantined rows per reason:"]
    for log, t in totals.items():
        for reason, n in sorted(t["quarantined_by_reason"].items()):
            lines.append(f"  {log:<12} {reason:<32}{n:>8,}")
    return "\n".join(lines)


def serve(settings: Settings) -> None:
    """Keep the UIs up in the foreground until Ctrl-C (Redis stays up with this process)."""
    ui = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "pipelines.definitions", "-p", str(DAGSTER_PORT)]
    )
    print(f"\nDagster UI: http://127.0.0.1:{DAGSTER_PORT}   (Ctrl-C stops everything)", flush=True)
    try:
        ui.wait()
    except KeyboardInterrupt:
        ui.terminate()
        ui.wait(timeout=30)


def main(argv: list[str]) -> None:
    # Third-party deprecation noise (ibis, Feast's "experimental" on-demand views) hides the summary.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="On demand feature view is an experimental feature")
    settings = get_settings()
    export_dagster_env(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    print(f"LOUPE_HOME={settings.home}  world={settings.world}")
    port = settings.embedded_redis_port
    with redis_endpoint(settings.redis_url, settings.redis_dir, port) as redis_url:
        print(f"redis: {redis_url}")
        if argv[:1] == ["ui"]:
            serve(settings)
            return
        world = prepare_world(settings)
        instance = dg.DagsterInstance.get()
        print(f"ingesting {len(world['days'])} days ...", flush=True)
        totals = ingest_days(settings, world["days"], instance, redis_url)
        print("\n" + format_ingest_table(totals) + "\n", flush=True)
        print("features ...", flush=True)
        features = build_features(settings, world["days"], instance, redis_url)
        print(json.dumps(features, indent=2), flush=True)
        if settings.serve:
            serve(settings)


if __name__ == "__main__":
    main(sys.argv[1:])
