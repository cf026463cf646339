"""The medium world the benchmarks share: generated and ingested once, kept under
LOUPE_HOME/bench/medium so later benchmarks (features, quality, serving) start from its lake."""

from __future__ import annotations

import json
import shutil

import dagster as dg

from data.contracts import LOG_TYPES
from data.lake import partition_days
from data.settings import Settings, get_settings
from pipelines.operations import ingest_days, prepare_world
from pipelines.partitions import materialize_day

WORLD = "medium"


def bench_settings(world: str = WORLD) -> Settings:
    base = get_settings()
    return base.with_(home=base.home / "bench" / world, world=world, source="simulator", landing=None)


def add_world_argument(parser) -> None:
    """`--world medium|tiny` of a benchmark that runs on either (`chosen_world` reads it)."""
    parser.add_argument("--world", choices=("medium", "tiny"), default=None,
                        help="default: medium if its lake is complete, else tiny")


def chosen_world(world: str | None) -> Settings:
    """The settings of `world`; None: medium if its lake is complete, else tiny."""
    if world:
        return bench_settings(world)
    medium = bench_settings("medium")
    return medium if lake_ready(medium) else bench_settings("tiny")


def lake_ready(settings: Settings) -> bool:
    marker = settings.world_dir / "world.json"
    if not marker.exists():
        return False
    days = json.loads(marker.read_text())["days"]
    return all(partition_days(settings.lake_dir, log)[-1:] == days[-1:] for log in LOG_TYPES)


def ensure_lake(settings: Settings) -> dict:
    """The world summary; generates and ingests the world unless its lake is complete."""
    if lake_ready(settings):
        return json.loads((settings.world_dir / "world.json").read_text())
    shutil.rmtree(settings.home, ignore_errors=True)
    world = prepare_world(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        ingest_days(settings, world["days"], instance)
    return world


def ensure_feature_snapshots(settings: Settings, days: list[str]) -> None:
    """Compute the feature snapshots of `days` that the workspace does not hold yet (per table)."""
    from features.snapshots import SNAPSHOT_TABLES
    from features.storage import feature_days
    from pipelines.defs.features.assets import feature_assets, feature_key
    from pipelines.operations import QUIET
    from pipelines.resources import build_resources

    resources = build_resources(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        for day in days:
            missing = [t for t in SNAPSHOT_TABLES if day not in feature_days(settings.lake_dir, t)]
            if missing:
                materialize_day(feature_assets, partition_key=day, instance=instance, resources=resources,
                                selection=[feature_key(t) for t in missing], run_config=QUIET)
                print(f"  features {day}: {', '.join(t.name for t in missing)}", flush=True)
