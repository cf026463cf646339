"""bench-scaling: how the daily path's stages grow with the world (cost curves).

For each world size (tiny, small, medium by default), in a workspace of its own under
LOUPE_HOME/bench/scaling/<world> with a fresh embedded Valkey, the daily path's stages, each timed
with the peak RSS of this process and its children (Spark, its Python workers, the server):

- ingest: every landing day of the world (one backfill run), against the events landed;
- features: the last day's feature snapshots (the day before's computed first, untimed);
- online_full / online: the online refresh of the day before into an empty store (full), then of
  the last day (incremental), against the entities written;
- candidates: the last day's fan-out and Explore builders;
- training: what `make run` trains on the last day (`operations.train_and_promote`): the window's
  real-time rows and training sets, both surfaces' rankers, evaluation, promotion and A/B. The
  window's earlier feature snapshots are computed first, untimed (the features stage times one day).

Writes benchmarks/results/scaling.json and scaling.png (time and peak memory per stage against events).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg

from benchmarks.common import RESULTS_DIR, PeakRss, write_result
from benchmarks.workspace import bench_settings
from data.redis_server import EmbeddedRedis
from pipelines.defs.features.assets import feast_online, feast_registry, feature_assets
from pipelines.operations import QUIET, ingest_days, prepare_candidate_state, prepare_world, train_and_promote
from pipelines.partitions import materialize_day
from pipelines.resources import build_resources

WORLDS = ("tiny", "small", "medium")


def measure(world: str) -> dict:
    base = bench_settings(world)
    settings = base.with_(home=base.home.parent / "scaling" / world)
    shutil.rmtree(settings.home, ignore_errors=True)
    summary = prepare_world(settings)
    days = summary["days"]
    stages: dict[str, dict] = {}

    def stage(name: str, run):
        with PeakRss() as rss:
            start = time.perf_counter()
            out = run()
            stages[name] = {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mb": rss.peak_mb}
        return out

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(data_dir=Path(tmp)) as redis, \
            dg.DagsterInstance.ephemeral() as instance:
        resources = build_resources(settings, redis.url)

        def materialize(assets, day=None):
            return materialize_day(assets, partition_key=day, instance=instance, resources=resources,
                                   run_config=QUIET)

        stage("ingest", lambda: ingest_days(settings, days, instance, redis.url, on_day=lambda _: None))
        materialize(feature_assets, days[-2])
        stage("features", lambda: materialize(feature_assets, days[-1]))
        materialize([feast_registry])
        for name, day in (("online_full", days[-2]), ("online", days[-1])):
            [event] = stage(name, lambda day=day: materialize([feast_online], day)).get_asset_materialization_events()
            stages[name]["entities"] = sum(event.materialization.metadata["written"].value.values())
        stage("candidates", lambda: prepare_candidate_state(resources, instance, days[-1], days[-2]))
        # the window's training sets read each of its days' snapshots (and the day before its first)
        window_start = max(0, len(days) - resources["training_config"].load().train_days - 3)
        for day in days[window_start:-2]:
            materialize(feature_assets, day)
        trained = stage("training", lambda: train_and_promote(settings, days, instance, redis.url, resources))
        stages["training"]["parts_s"] = trained["seconds"]
        for name, measured in stages.items():
            print(f"  {world} {name}: {measured}", flush=True)
    shutil.rmtree(settings.home, ignore_errors=True)  # a medium workspace is ~10 GB
    return {"users": summary["rows"]["users"], "events": summary["events"],
            "days": len(days), "events_per_day": round(summary["events"] / len(days)), "stages": stages}


def growth(results: dict[str, dict]) -> dict[str, dict]:
    """Per stage, between the two largest worlds: the exponent of time and of peak memory in events
    (1.0 = linear; fixed costs make it lower on small worlds), and the medium world's rate."""
    small, large = list(results)[-2:]
    ratio = math.log(results[large]["events"] / results[small]["events"])
    out = {}
    for name, big in results[large]["stages"].items():
        little = results[small]["stages"][name]
        out[name] = {
            "time_exponent": round(math.log(big["seconds"] / little["seconds"]) / ratio, 2),
            "memory_exponent": round(math.log(big["peak_rss_mb"] / little["peak_rss_mb"]) / ratio, 2),
            "events_per_s": round(results[large]["events"] / big["seconds"]),
            **({"entities_per_s": round(big["entities"] / big["seconds"])} if "entities" in big else {}),
        }
    return out


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = list(results)
    events = [results[w]["events"] for w in worlds]
    names = list(results[worlds[-1]]["stages"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in names:
        left.plot(events, [results[w]["stages"][name]["seconds"] for w in worlds], marker="o", label=name)
        right.plot(events, [results[w]["stages"][name]["peak_rss_mb"] / 1024 for w in worlds], marker="o",
                   label=name)
    for ax, label in ((left, "seconds"), (right, "peak RSS (GB, process tree incl. Spark and Valkey)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events in the world (" + ", ".join(worlds) + ")")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle("Loupe's daily path on 2 cores: time and memory per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS))
    args = parser.parse_args()
    results = {}
    for world in args.worlds:
        print(f"{world} ...", flush=True)
        results[world] = measure(world)
    if tuple(args.worlds) == WORLDS:
        write_result("scaling", {"worlds": results, "growth": growth(results)})
        plot(results, RESULTS_DIR / "scaling.png")
    else:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
