"""The platform's steps, run in-process and shared by `make run` (pipelines/run.py), the benchmarks
and the tests: prepare the landing folder (a team's export, or the simulated world) and claim the
lake; then ingest days, build features, train and promote, and prepare a day's candidate state, each
through the Dagster assets (dg.materialize). What `make run` prints of their results is in
pipelines/summary.py.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from data import lake
from data.contracts import LOG_TYPES
from data.days import days_before
from data.settings import Settings
from data.stream.archiver import ArchiverBusy, ArchiveReport, StreamArchiver
from data.stream.valkey_stream import ValkeyStream
from data.world import WorldSummary, generate_world
from data.world.live_played import Played
from pipelines.defs.candidates.assets import (
    candidates_embeddings,
    candidates_fanout,
    candidates_fatigue,
    candidates_integrity,
    candidates_rebuild,
    candidates_search_index,
    candidates_social,
    candidates_stories,
    candidates_trending,
)
from pipelines.defs.features.assets import (
    feast_online,
    feast_registry,
    feature_assets,
    realtime_online,
    realtime_rows,
)
from pipelines.defs.ingest.assets import ingest_assets
from pipelines.defs.training.assets import surface_outcomes, training_assets, training_examples
from pipelines.defs.training.checks import served_features_match_training
from pipelines.partitions import DAYS, RANGE_END, RANGE_START, landing_days, materialize_day, register_days
from pipelines.resources import build_resources

# Dagster's console logger shows errors only: step-by-step events stay in the Dagster UI, and the
# assets' warnings (values outside the vocabulary, value-model heads dropped) are in `make run`'s summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


HOW_TO_BRING_DATA = """\
No landing data in {landing}: running on the simulated world instead.
To run Loupe on your own export, drop it as <log>/<YYYY-MM-DD>/*.jsonl (docs/log_contracts.md) and
  LOUPE_LANDING=/path/to/export make run       (read only: Loupe never changes or deletes it)
or run on real public data: make run-open-bandit (docs/real_data.md)."""


class NoLandingData(RuntimeError):
    """The configured landing folder holds no day to process."""


class TrainingBlocked(RuntimeError):
    """Training did not start, with the reason (too little data, or served features that do not
    match training's): the service keeps what it serves."""


class NotEnoughDays(TrainingBlocked):
    """Too few days to train on: reported, and the platform runs on without a model."""


@dataclass(frozen=True)
class Landing:
    """What a run processes: the landing folder, its days, and the simulated world's summary (None
    for a team's export, which has no simulator truth)."""

    folder: Path
    days: list[str]
    world: dict | None


def prepare_landing(settings: Settings) -> Landing:
    """The landing data of this run: a team's folder as it is, or the configured simulated world."""
    if settings.source == "landing":
        folder = settings.landing_dir
        days = landing_days(folder)
        if not days:
            raise NoLandingData(
                f"the landing folder {folder} holds no <log>/<YYYY-MM-DD>/*.jsonl file "
                f"(logs: {', '.join(LOG_TYPES)}; docs/log_contracts.md). Unset LOUPE_LANDING and set "
                "LOUPE_SOURCE=simulator to run on the simulated world instead.")
        print(f"landing folder {folder}: {len(days)} days, {days[0]} .. {days[-1]} (read only)", flush=True)
        return Landing(folder, days, None)
    if settings.landing is None:
        print(HOW_TO_BRING_DATA.format(landing=settings.home / "landing"), flush=True)
    world = prepare_world(settings)
    return Landing(settings.landing_dir, world["days"] + played_days(settings, world["days"][-1]), world)


def played_days(settings: Settings, world_last: str) -> list[str]:
    """The days after the world's that live mode played to their end: the stream's archiver landed
    them beside the world's. A day a play stopped inside (its last sessions' lines after midnight)
    waits for the play that finishes it: a stub of a day would become the run's test day."""
    until = Played.read(settings.live_played_file).until
    if until is None:
        return []
    last = days_before(until[:10], 1)  # the last whole day: before the one the play ended in (or at)
    return [d for d in landing_days(settings.landing_dir) if world_last < d <= last]


def prepare_world(settings: Settings) -> dict:
    """Generate the configured world into its own folder unless it is already there.

    Each world (size, seed) has a folder of its own under LOUPE_HOME/worlds/, marked by its
    world.json once complete: generating one never touches another world or a team's landing
    folder. Only an incomplete generation (no marker) of this same world is cleared first, or one
    made before a log existed (the generator is deterministic: the other logs are written the same).
    """
    marker = settings.world_dir / "world.json"
    if marker.exists():
        data = json.loads(marker.read_text())
        missing = [log for log in LOG_TYPES if log not in data["rows"]] if "rows" in data else []
        if not missing:
            print(f"world {settings.world} (seed {settings.seed}) already landed in {settings.world_dir}; reusing it")
            return data
        # written by a Loupe without these logs: generated again, the others' lines come out the same
        print(f"world {settings.world} (seed {settings.seed}) has no {', '.join(missing)} log: generating it again")
    shutil.rmtree(settings.world_dir, ignore_errors=True)  # our own half-written world, never data we did not write
    print(f"generating the {settings.world} world (seed {settings.seed}) into {settings.world_dir} ...", flush=True)
    summary: WorldSummary = generate_world(
        size=settings.world,
        seed=settings.seed,
        landing_dir=settings.landing_dir,
        truth_dir=settings.truth_dir,
    )
    data = summary.to_dict()
    marker.write_text(json.dumps(data, indent=2))
    return data


def claim_lake(settings: Settings) -> None:
    """The lake holds one landing folder's data: built from another, Loupe's own lake is cleared
    (it is derived and rebuilt from the landing folder; the landing folder itself is never touched)."""
    marker = settings.lake_dir / "_loupe_source.json"
    current = {"landing": str(settings.landing_dir)}
    if marker.exists() and json.loads(marker.read_text()) == current:
        return
    if settings.lake_dir.exists() and any(settings.lake_dir.iterdir()):
        print(f"the lake {settings.lake_dir} was built from another landing folder: rebuilding it", flush=True)
        shutil.rmtree(settings.lake_dir)
    settings.lake_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(current))


class IngestStopped(RuntimeError):
    """A landing day did not reconcile (a file not read, counts that do not add up) or failed."""


def archive_stream(settings: Settings) -> ArchiveReport | None:
    """Land what the event stream holds (the served impressions of a service that ran since) into
    the landing folder, before its days are listed and ingested. None: no stream configured."""
    if not settings.stream_url:
        return None
    try:
        return StreamArchiver(ValkeyStream.of(settings), settings.landing_dir).archive()
    except ArchiverBusy as exc:  # the Dagster sensor is at it: what it lands, the next run ingests
        print(f"event stream: not archived now: {exc}", flush=True)
        return None


def print_step(step: str) -> None:
    print(f"  {step}", flush=True)


def day_ranges(instance: dg.DagsterInstance, days: list[str]) -> list[list[str]]:
    """`days` in date order, cut into ranges of consecutive partitions (a Dagster partition range
    follows the order days were registered in, which a late-landed day can break)."""
    position = {day: i for i, day in enumerate(instance.get_dynamic_partitions(DAYS))}
    ranges: list[list[str]] = []
    for day in sorted(days):
        if ranges and position[day] == position[ranges[-1][-1]] + 1:
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return ranges


def ingest_days(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None,
    on_day: Callable[[str], None] = print_step,
) -> dict[str, dict]:
    """Materialize every ingest asset over `days`: one run per range of consecutive days, each log
    one Spark pass over the range (the assets' single-run backfill policy); returns summed metadata
    per log type (with the values outside the contract or vocabulary per field, and how often each
    was seen)."""
    totals: dict[str, dict] = {log: defaultdict(int) for log in LOG_TYPES}
    reasons: dict[str, Counter] = {log: Counter() for log in LOG_TYPES}
    unknown: dict[str, dict[str, Counter]] = {log: defaultdict(Counter) for log in LOG_TYPES}
    resources = build_resources(settings, redis_url)
    register_days(instance, days)
    for run_days in day_ranges(instance, days):
        span = run_days[0] if len(run_days) == 1 else f"{run_days[0]} .. {run_days[-1]}"
        result = dg.materialize(ingest_assets, instance=instance, resources=resources, run_config=QUIET,
                                raise_on_error=False, tags={RANGE_START: run_days[0], RANGE_END: run_days[-1]})
        failed = [f"  {c.asset_key.to_user_string()} {c.check_name}: {c.description}"
                  for c in result.get_asset_check_evaluations() if not c.passed]
        if failed or not result.success:
            raise IngestStopped(f"ingesting {span} stopped: a blocking check failed, nothing downstream "
                                f"builds on it (Dagster UI: `make ui`)\n" + "\n".join(failed or [
                                    # the failure's own words (per log), not "Execution of step failed"
                                    f"  {e.step_key}: {e.event_specific_data.error.message.strip()}"
                                    for e in result.all_events if e.event_type_value == "STEP_FAILURE"]))
        # Dagster records the run's materialization on each day of its range: count it once.
        runs = {event.asset_key: event.materialization for event in result.get_asset_materialization_events()}
        for key, materialization in runs.items():
            log = key.path[-1]
            meta = {k: v.value for k, v in materialization.metadata.items()}
            for name in ("rows_read", "rows_landed", "rows_quarantined", "duplicates_dropped"):
                totals[log][name] += meta[name]
            reasons[log].update(meta["quarantined_by_reason"])
            for field, values in meta.get("unknown_enum_values", {}).items():
                unknown[log][field].update(values)
        for day in run_days:
            on_day(f"ingested {day}")
    return {log: {**totals[log], "quarantined_by_reason": dict(reasons[log]),
                  "unknown_values": {f: dict(v) for f, v in unknown[log].items()}} for log in LOG_TYPES}


def feature_snapshots(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None,
    on_day: Callable[[str], None] = print_step,
) -> tuple[dict[str, int], dict[str, float]]:
    """Every day's feature snapshots (Spark): rows of the last day per table, and seconds per table
    (its own jobs', all days: a day's tables are computed side by side)."""
    resources = build_resources(settings, redis_url)
    register_days(instance, days)
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    for day in days:
        result = dg.materialize(feature_assets, partition_key=day, instance=instance,
                                resources=resources, run_config=QUIET)
        for event in result.get_asset_materialization_events():
            name, meta = event.asset_key.to_user_string(), event.materialization.metadata
            rows[name] = meta["dagster/row_count"].value
            seconds[name] = seconds.get(name, 0.0) + meta["seconds"].value
        on_day(f"features {day}")
    return rows, seconds


def build_features(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None,
    on_step: Callable[[str], None] = print_step,
) -> dict:
    """Feature snapshots for every day, then Feast apply and the last day online, the real-time
    views warm-started from the lake's last two days (for what the stream worker does not hold).

    Only the newest day is materialized: the online store serves the latest snapshot, and the
    offline store keeps every day for point-in-time training sets.
    """
    rows, seconds = feature_snapshots(settings, days, instance, redis_url, on_step)
    resources = build_resources(settings, redis_url)
    checks: dict[str, bool] = {}
    for assets, partition in (([feast_registry], None), ([feast_online], days[-1]), ([realtime_online], days[-1])):
        start = time.perf_counter()
        result = dg.materialize(assets, partition_key=partition, instance=instance,
                                resources=resources, run_config=QUIET)
        seconds[assets[0].key.to_user_string()] = time.perf_counter() - start
        for check in result.get_asset_check_evaluations():
            checks[f"{check.asset_key.to_user_string()}:{check.check_name}"] = check.passed
        on_step(assets[0].key.to_user_string())
    return {"rows_last_day": rows, "seconds": {k: round(v, 2) for k, v in seconds.items()}, "checks": checks}


def train_and_promote(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None,
    resources: dict | None = None, on_step: Callable[[str], None] | None = None,
) -> dict:
    """Training sets for the window ending on the last day, then both surfaces' rankers,
    evaluation, promotion check, champion and simulated A/B for that test day."""
    resources = resources or build_resources(settings, redis_url)
    register_days(instance, days)
    cfg = resources["training_config"].load()
    # The first day has no feature snapshot before it: train on up to train_days after it, among
    # the days that served impressions (an export may have none: nothing to learn from).
    served = set(lake.partition_days(settings.lake_dir, "impressions"))
    window = [d for d in days[1:] if d in served][-(cfg.train_days + 2):]
    if len(window) < 3:
        raise NotEnoughDays(
            f"training needs impressions on at least 3 days after the first (train, validation, test); "
            f"the landing folder has {len(days)} days, {len(served)} with impressions")
    test_day = window[-1]
    seconds: dict[str, float] = {}
    # The real-time views' rows of the window and the day before it (a row lives a day), one replay
    start = time.perf_counter()
    first = days[days.index(window[0]) - 1]
    dg.materialize([realtime_rows], instance=instance, resources=resources, run_config=QUIET,
                   tags={RANGE_START: first, RANGE_END: test_day})
    seconds["features/realtime"] = round(time.perf_counter() - start, 1)
    if on_step:
        on_step(f"real-time rows {first} .. {test_day}")
    start = time.perf_counter()
    skew: dict[str, dict] = {}
    for day in window:  # with the train/serve skew check, as the Dagster training job runs it
        examples = dg.materialize([training_examples, served_features_match_training], partition_key=day,
                                  instance=instance, resources=resources, run_config=QUIET, raise_on_error=False)
        if not examples.get_asset_materialization_events():
            raise RuntimeError(f"training/examples failed for {day}")
        for check in examples.get_asset_check_evaluations():
            meta = {k: v.value for k, v in check.metadata.items()}
            skew[day] = {"passed": check.passed, "rows_compared": meta["rows_compared"],
                         "failing_features": meta["failing_features"],
                         "mismatch_rate_per_feature": meta["mismatch_rate_per_feature"]}
        if on_step:
            on_step(f"training set {day}")
    seconds["training/examples"] = round(time.perf_counter() - start, 1)
    skewed = {day: check["failing_features"] for day, check in skew.items() if not check["passed"]}
    if skewed:  # the check is blocking: in the Dagster job the rankers would not run either
        raise TrainingBlocked(f"the train/serve skew check failed ({skewed}): the features the service "
                              "scored differ from what training retrieves; see the check in the Dagster UI")
    start = time.perf_counter()
    result = dg.materialize(training_assets[1:], partition_key=test_day,
                            instance=instance, resources=resources, run_config=QUIET, raise_on_error=False)
    for step in result.get_step_success_events():
        seconds[step.step_key.replace("__", "/")] = round(step.event_specific_data.duration_ms / 1000, 1)
    seconds["training (all surfaces)"] = round(time.perf_counter() - start, 1)
    if on_step:
        on_step("rankers, evaluation, promotion, A/B")
    # A failed blocking promotion check fails its evaluation step on purpose: not an error here.
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
                and e.event_specific_data.error.cls_name != "DagsterAssetCheckFailedError"]
    if failures:
        raise RuntimeError(f"training failed: {failures[0].step_key}: {failures[0].message}")
    return {"test_day": test_day, "seconds": seconds, "surfaces": surface_outcomes(result), "skew_check": skew}


@dataclass(frozen=True)
class CandidateState:
    """What preparing a day's candidate state reported, per candidate asset ("candidates/fanout"):
    its step's seconds and its metadata."""

    seconds: dict[str, float]
    metadata: dict[str, dict]

    @property
    def embeddings_index(self) -> Path:
        """The folder the embeddings asset saved the day's model and index to."""
        return Path(self.metadata["candidates/embeddings"]["index"])


def prepare_candidate_state(resources: dict, instance: dg.DagsterInstance, day: str, previous: str | None,
                            explore_day: str | None = None) -> CandidateState:
    """The candidate state a service reads at the end of `day`, built by the candidate assets (for
    `make run`, the benchmarks and the tests alike): rebuilt from the lake through `previous` (the day
    before), `day`'s events applied by the fan-out worker as a daily run would, then the Explore
    builders (trending, social, embeddings), the viewers' fatigue, the content labels and the search index
    as of `explore_day`, and the stories live at `day`'s end. Default
    `day`; the benchmarks pass `previous`: during `day` a service has the Explore sets the daily run
    built the night before. `previous` None (a one-day export): rebuilt through `day`, nothing left to fan out."""
    results = [dg.materialize([candidates_rebuild], instance=instance, resources=resources, run_config={
        **QUIET, "ops": {"candidates__rebuild": {"config": {"day": previous or day}}}})]
    runs: dict[str, list] = {day: [candidates_fanout]} if previous else {}
    runs.setdefault(day, []).append(candidates_stories)  # live at `day`'s end: not yesterday's
    runs.setdefault(explore_day or day, []).extend([candidates_trending, candidates_social, candidates_fatigue,
                                                    candidates_integrity, candidates_embeddings,
                                                    candidates_search_index])
    for partition, assets in runs.items():
        results.append(materialize_day(assets, partition_key=partition, instance=instance, resources=resources,
                                       run_config=QUIET))
    seconds: dict[str, float] = {}
    metadata: dict[str, dict] = {}
    for result in results:
        for step in result.get_step_success_events():
            seconds[step.step_key.replace("__", "/")] = round(step.event_specific_data.duration_ms / 1000, 1)
        for event in result.get_asset_materialization_events():
            metadata[event.asset_key.to_user_string()] = {k: v.value for k, v in event.materialization.metadata.items()}
    return CandidateState(seconds, metadata)
