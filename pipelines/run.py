"""`make run`: the main job on embedded defaults, end to end.

1. generate the simulated world into the landing folder (skipped when that world is already there)
2. ingest every landing day into the lake through the Dagster assets (runs show in the Dagster UI)
3. compute every day's feature snapshots (Spark), `feast apply`, materialize the last day into the
   Redis online store (+ the packed view the ranking service reads)
4. print rows per log, quarantined rows per reason, feature rows per table
5. build training sets, train both surfaces' rankers, evaluate them against the baselines and the
   oracle, promote through the blocking check, run the simulated A/B; print the metrics table
6. rebuild the candidate state (graph, Home caches) through the day before the last, fan out the
   last day, build its Explore sources (trending, social, embeddings); print one viewer's candidates
7. start the ranking service (bentoml serve, clock at the end of the last day), wait until it is
   ready (compiled champion, warm), print one simulated viewer's ranked Home feed
8. print the time of each stage; with LOUPE_SERVE=1, keep the ranking service, the Dagster and
   MLflow UIs up until Ctrl-C (`python -m pipelines.run ui`: only that; `python -m pipelines.run
   mlflow-ui`: MLflow's alone)

The console shows Loupe's summary only (pipelines/console.py: a progress line per long stage on a
terminal, plain lines elsewhere); the steps' events stay in the Dagster UI, the service's output in
LOUPE_HOME/serving/service.log.

Redis is the configured REDIS_URL or an embedded Valkey server kept under LOUPE_HOME/redis.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from data import lake
from data.contracts import LOG_TYPES
from data.days import day_end_iso, day_end_ms
from data.quiet import filter_third_party_warnings
from data.redis_server import redis_endpoint
from data.settings import Settings, export_dagster_env, get_settings, serving_secrets
from data.world import WorldSummary, generate_world
from pipelines.console import RunConsole
from pipelines.defs.candidates.assets import (
    candidates_embeddings,
    candidates_fanout,
    candidates_rebuild,
    candidates_social,
    candidates_trending,
)
from pipelines.defs.features.assets import feast_online, feast_registry, feature_assets
from pipelines.defs.ingest.assets import ingest_assets
from pipelines.defs.training.assets import surface_outcomes, training_assets, training_examples
from pipelines.defs.training.checks import served_features_match_training
from pipelines.partitions import landing_days, materialize_day, register_days
from pipelines.resources import build_resources
from serving.launcher import start_ranking_service

DAGSTER_PORT = 3000
MLFLOW_PORT = 5000
# The console shows our summary; step-by-step events stay in the Dagster UI. The assets' warnings
# (values outside the vocabulary, value-model heads dropped) are in the summary, errors show here.
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
    return Landing(settings.landing_dir, world["days"], world)


def prepare_world(settings: Settings) -> dict:
    """Generate the configured world into its own folder unless it is already there.

    Each world (size, seed) has a folder of its own under LOUPE_HOME/worlds/, marked by its
    world.json once complete: generating one never touches another world or a team's landing
    folder. Only an incomplete generation (no marker) of this same world is cleared first.
    """
    marker = settings.world_dir / "world.json"
    if marker.exists():
        print(f"world {settings.world} (seed {settings.seed}) already landed in {settings.world_dir}; reusing it")
        return json.loads(marker.read_text())
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


def print_step(step: str) -> None:
    print(f"  {step}", flush=True)


def ingest_days(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None,
    on_day: Callable[[str], None] = print_step,
) -> dict[str, dict]:
    """Materialize every ingest asset for each day; returns summed metadata per log type (with the
    values outside the contract or vocabulary per field, and how often each was seen)."""
    totals: dict[str, dict] = {log: defaultdict(int) for log in LOG_TYPES}
    reasons: dict[str, Counter] = {log: Counter() for log in LOG_TYPES}
    unknown: dict[str, dict[str, Counter]] = {log: defaultdict(Counter) for log in LOG_TYPES}
    resources = build_resources(settings, redis_url)
    register_days(instance, days)
    for day in days:
        result = dg.materialize(ingest_assets, partition_key=day, instance=instance, resources=resources,
                                run_config=QUIET, raise_on_error=False)
        failed = [f"  {c.asset_key.to_user_string()} {c.check_name}: {c.description}"
                  for c in result.get_asset_check_evaluations() if not c.passed]
        if failed or not result.success:
            raise IngestStopped(f"ingesting {day} stopped: a blocking check failed, nothing downstream "
                                f"builds on it (Dagster UI: `make ui`)\n" + "\n".join(failed or [
                                    f"  {e.step_key}: {e.message}" for e in result.all_events
                                    if e.event_type_value == "STEP_FAILURE"]))
        for event in result.get_asset_materialization_events():
            log = event.asset_key.path[-1]
            meta = {k: v.value for k, v in event.materialization.metadata.items()}
            for name in ("rows_read", "rows_landed", "rows_quarantined", "duplicates_dropped"):
                totals[log][name] += meta[name]
            reasons[log].update(meta["quarantined_by_reason"])
            for field, values in meta.get("unknown_enum_values", {}).items():
                unknown[log][field].update(values)
        on_day(f"ingested {day}")
    return {log: {**totals[log], "quarantined_by_reason": dict(reasons[log]),
                  "unknown_values": {f: dict(v) for f, v in unknown[log].items()}} for log in LOG_TYPES}


def feature_snapshots(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None,
    on_day: Callable[[str], None] = print_step,
) -> tuple[dict[str, int], dict[str, float]]:
    """Every day's feature snapshots (Spark): rows of the last day per table, seconds per asset."""
    resources = build_resources(settings, redis_url)
    register_days(instance, days)
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
        on_day(f"features {day}")
    return rows, seconds


def build_features(
    settings: Settings, days: list[str], instance: dg.DagsterInstance, redis_url: str | None = None,
    on_step: Callable[[str], None] = print_step,
) -> dict:
    """Feature snapshots for every day, then Feast apply and the last day online.

    Only the newest day is materialized: the online store serves the latest snapshot, and the
    offline store keeps every day for point-in-time training sets.
    """
    rows, seconds = feature_snapshots(settings, days, instance, redis_url, on_step)
    resources = build_resources(settings, redis_url)
    checks: dict[str, bool] = {}
    for assets, partition in (([feast_registry], None), ([feast_online], days[-1])):
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
    builders (trending, social, embeddings) as of `explore_day`. Default `day`; the benchmarks pass
    `previous`: during `day` a service has the Explore sets the daily run built the night before.
    `previous` None (a one-day export): rebuilt through `day`, nothing left to fan out."""
    results = [dg.materialize([candidates_rebuild], instance=instance, resources=resources, run_config={
        **QUIET, "ops": {"candidates__rebuild": {"config": {"day": previous or day}}}})]
    runs: dict[str, list] = {day: [candidates_fanout]} if previous else {}
    runs.setdefault(explore_day or day, []).extend([candidates_trending, candidates_social, candidates_embeddings])
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


def sample_candidates(settings: Settings, redis_url: str, day: str, embeddings_index: Path) -> str:
    """One simulated viewer's candidates per source and what the filters removed, as text."""
    import redis as redis_lib

    from candidate_gen.blend import blend
    from candidate_gen.config import CandidateConfig
    from candidate_gen.explore.embeddings import load
    from candidate_gen.filters import default_chain
    from candidate_gen.sources.base import SourceRequest, run_sources
    from candidate_gen.sources.catalog import build_sources

    cfg, client = CandidateConfig.load(), redis_lib.Redis.from_url(redis_url)
    model = load(embeddings_index)
    sources = list(build_sources(client, cfg, model).values())
    viewer, _ = sample_viewer(settings, day)
    now = day_end_ms(day)
    # the first request opens each source's Redis connections and threads: a service warms up
    # before taking traffic, so the sample is the second request
    run_sources(sources, SourceRequest(viewer, now))
    outcomes = run_sources(sources, SourceRequest(viewer, now))
    mixed = blend({o.name: o.candidates for o in outcomes}, {s.name: s.config.cap for s in sources}, 200)
    filtered = default_chain(client, cfg).run(viewer, mixed, now)
    lines = [f"candidates for viewer {viewer} at the end of {day}:"]
    lines += [f"  {o.name:<11} {o.status:<8} {len(o.candidates):>5} candidates  {o.elapsed_ms:6.1f} ms"
              for o in outcomes]
    lines.append(f"  blended {len(mixed)}, kept {len(filtered.kept)} after filters, removed {dict(filtered.counts)}")
    return "\n".join(lines)


def format_metrics_table(training: dict) -> str:
    lines = []
    for surface, s in training["surfaces"].items():
        if "evaluation" not in s:
            lines += [f"{surface}: skipped: {s.get('skipped')}", ""]
            continue
        ev = s["evaluation"]
        lines.append(f"{surface}: test day {training['test_day']}, {ev['requests']:,} requests, "
                     f"challenger {ev['model_name']} v{ev['challenger_version']} ({ev['challenger_kind']})")
        head = f"  {'ranker':<15}{'NDCG@10':>9}{'NDCG@50':>9}{'NDCG@10 real.':>15}{'MAP':>8}"
        lines += [head, "  " + "-" * (len(head) - 2)]
        for name, m in ev["rankers"].items():
            lines.append(f"  {name:<15}{m['ndcg10']:>9.4f}{m['ndcg50']:>9.4f}"
                         f"{m['ndcg10_realised']:>15.4f}{m['map']:>8.4f}")
        pct = ev.get("pct_of_oracle")
        lines.append(f"  % of oracle: {pct:.1f}   lift vs chronological: {ev['lift_vs_chronological_pct']:+.1f}%"
                     if pct is not None else f"  lift vs chronological: {ev['lift_vs_chronological_pct']:+.1f}%")
        trained = s.get("trained", {})
        for head, why in trained.get("heads_dropped", {}).items():
            lines.append(f"  value-model head {head} dropped: {why}")
        for kind, why in trained.get("not_trained", {}).items():
            lines.append(f"  {kind} not trained: {why}")
        d = s["decision"]
        outcome = ("PROMOTED" if d.get("promoted") else "kept champion" if d.get("champion_version")
                   else "nothing promoted: the service keeps its heuristic")
        lines.append(f"  promotion: {outcome} ({d.get('reason')})")
        ab = s["ab_test"]
        if "skipped" in ab:
            lines.append(f"  simulated A/B: skipped ({ab['skipped']})")
        if "engagements" in ab:
            e = ab["engagements"]
            lines.append(f"  simulated A/B vs chronological: engagements/session {e['lift_pct']:+.1f}% "
                         f"(95% CI {e['ci95_pct'][0]:+.1f} .. {e['ci95_pct'][1]:+.1f}), "
                         f"{ab['viewers']['treatment']:,}/{ab['viewers']['control']:,} viewers")
        lines.append("")
    for day, check in training.get("skew_check", {}).items():
        verdict = "passed" if check["passed"] else f"FAILED on {check['failing_features']}"
        lines.append(f"train/serve skew check {day}: {check['rows_compared']:,} served rows with scored vectors "
                     f"compared, {verdict}")
    return "\n".join(lines)


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
    unknown = [(log, field, values) for log, t in totals.items()
               for field, values in sorted(t.get("unknown_values", {}).items())]
    if unknown:
        lines += ["", ("values outside the contract or the log vocabulary "
                       "(quarantined; LOUPE_VOCABULARY declares more):")]
        lines += [f"  {log:<12} {field}: " + ", ".join(f"{v} ({n:,})" for v, n in sorted(values.items()))
                  for log, field, values in unknown]
    return "\n".join(lines)


def format_features(features: dict) -> str:
    """Rows of the last day per feature table, seconds per asset (all days), the online checks."""
    rows, seconds = features["rows_last_day"], features["seconds"]
    head = f"  {'asset':<24}{'rows (last day)':>16}{'seconds':>10}"
    lines = ["features:", head, "  " + "-" * (len(head) - 2)]
    for name in list(rows) + [n for n in seconds if n not in rows]:
        count = f"{rows[name]:,}" if name in rows else ""
        lines.append(f"  {name:<24}{count:>16}{seconds.get(name, 0.0):>10.1f}")
    lines += [f"  check {name} {'passed' if ok else 'FAILED'}" for name, ok in features.get("checks", {}).items()]
    return "\n".join(lines)


def format_candidates(candidates: dict) -> str:
    """The candidate assets' seconds and what the fan-out worker did."""
    steps = ", ".join(f"{name.split('/')[-1]} {sec:.1f} s" for name, sec in candidates["seconds"].items())
    lines = [f"candidates for the end of {candidates['day']}: {steps}"]
    f = candidates.get("fanout") or {}
    if f:
        lines.append(f"  fan-out: {f['applied']:,} of {f['events']:,} events applied, {f['posts']:,} posts "
                     f"({f['celebrity_posts']:,} celebrity), {f['deletions']:,} deletions, {f['inserts']:,} "
                     f"inserts to {f['fanout_targets']:,} targets in {f['batches']:,} batches, {f['retries']} retries"
                     + (f", skipped {f['skipped']}" if f.get("skipped") else ""))
    return "\n".join(lines)


def mlflow_ui_command(settings: Settings, port: int = MLFLOW_PORT) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.tracking_uri,
            "--default-artifact-root", str(settings.mlflow_artifact_root), "--host", "127.0.0.1",
            "--port", str(port)]


def sample_viewer(settings: Settings, day: str) -> tuple[int, str]:
    """A viewer and the surface worth showing them: Home for an account that follows someone as of
    `day`; Explore for a viewer with impressions when nobody follows anyone (an export without a
    social graph, e.g. Open Bandit)."""
    from candidate_gen.rebuild import active_viewers
    from candidate_gen.viewers import viewers_with_followees

    viewers = viewers_with_followees(settings.lake_dir, day, 1)
    if len(viewers):
        return int(viewers[0]), "home"
    active = active_viewers(settings.lake_dir, day, 1)
    if len(active):
        return int(active[0]), "explore"
    raise RuntimeError(f"no account in the lake follows anyone or saw an impression as of {day}: no feed to show")


def sample_feed(settings: Settings, day: str) -> dict:
    """One viewer's ranked feed (Home, or Explore when nobody follows anyone), asked of the running
    service over HTTP: the response and a printable text."""
    from serving.__main__ import post

    viewer, surface = sample_viewer(settings, day)
    body = post(f"http://127.0.0.1:{settings.serving_port}/v1/feed/{surface}", {"viewer_id": viewer, "limit": 10},
                serving_secrets(settings).api_token)
    title = "Home" if surface == "home" else "Explore (nobody follows anyone in this data)"
    candidates, degraded = sum(body["candidates"].values()), body["degraded"] or "none"
    lines = [(f"ranked {title} feed for viewer {viewer}: request {body['request_id']}, "
              f"model {body['model_version']} ({body['scorer']}), {candidates} candidates, degraded: {degraded}"),
             f"  {'pos':>3} {'post':>9} {'author':>8} {'source':<11} {'score':>8}"]
    lines += [f"  {i['position']:>3} {i['post_id']:>9} {i['author_id']:>8} {i['source']:<11} {i['score']:>8.3f}"
              for i in body["items"]]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in body["stage_ms"].items())
    lines.append(f"  stage ms: {stages}")
    lines.append("  ask it yourself:\n" + sample_request(settings, surface, viewer))
    return {"viewer": viewer, "surface": surface, "response": body, "text": "\n".join(lines)}


def sample_request(settings: Settings, surface: str, viewer: int) -> str:
    """A curl command for one feed, with the token read where the service reads it (never printed)."""
    token = "$LOUPE_API_TOKEN" if settings.api_token else f"$(cat {settings.api_token_file})"
    return (f"  curl -s http://127.0.0.1:{settings.serving_port}/v1/feed/{surface} "
            f"-H \"Authorization: Bearer {token}\" -H 'Content-Type: application/json' "
            f"-d '{{\"viewer_id\": {viewer}, \"limit\": 10}}'")


def keep_uis_up(settings: Settings) -> None:
    """Keep the Dagster and MLflow UIs up in the foreground until Ctrl-C (Redis, and the ranking
    service `make run` started, stay up with this process)."""
    processes = [subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "pipelines.definitions", "-p", str(DAGSTER_PORT)]
    )]
    print(f"\nDagster UI: http://127.0.0.1:{DAGSTER_PORT}", flush=True)
    if settings.tracking_uri.startswith("sqlite:"):  # a tracking server has its own UI
        processes.append(subprocess.Popen(mlflow_ui_command(settings)))
        print(f"MLflow UI:  http://127.0.0.1:{MLFLOW_PORT}", flush=True)
    print("(Ctrl-C stops everything)", flush=True)
    try:
        processes[0].wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def main(argv: list[str]) -> None:
    filter_third_party_warnings()  # after the imports above: Feast's import sets filters of its own
    settings = get_settings()
    export_dagster_env(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    source = f"world={settings.world}" if settings.source == "simulator" else f"landing={settings.landing_dir}"
    print(f"LOUPE_HOME={settings.home}  {source}")
    if argv[:1] == ["mlflow-ui"]:
        print(f"MLflow UI: http://127.0.0.1:{MLFLOW_PORT}  ({settings.tracking_uri})", flush=True)
        subprocess.run(mlflow_ui_command(settings), check=False)
        return
    port = settings.embedded_redis_port
    console = RunConsole()
    with redis_endpoint(settings.redis_url, settings.redis_dir, port) as redis_url:
        print(f"redis: {redis_url}")
        if argv[:1] == ["ui"]:
            keep_uis_up(settings)
            return
        try:
            with console.stage("landing", title=""):
                landing = prepare_landing(settings)
        except NoLandingData as exc:
            sys.exit(f"make run: {exc}")
        try:
            run_platform(settings, landing, dg.DagsterInstance.get(), redis_url, console)
        except IngestStopped as exc:
            sys.exit(f"make run: {exc}")


def run_platform(settings: Settings, landing: Landing, instance: dg.DagsterInstance, redis_url: str,
                 console: RunConsole | None = None) -> dict:
    """Every stage of `make run` on one landing folder; returns what each stage reported. `console`
    shows each stage's progress and, at the end, the time per stage (default: plain lines)."""
    console = console or RunConsole(live=False)
    days = landing.days
    claim_lake(settings)
    register_days(instance, days)
    out: dict = {"days": days}
    with console.stage("ingest", total=len(days), title=f"ingesting {len(days)} days ...") as stage:
        out["ingest"] = ingest_days(settings, days, instance, redis_url, on_day=stage.advance)
    print("\n" + format_ingest_table(out["ingest"]) + "\n", flush=True)
    with console.stage("features", total=len(days) + 2) as stage:
        out["features"] = build_features(settings, days, instance, redis_url, on_step=stage.advance)
    print(format_features(out["features"]) + "\n", flush=True)
    with console.stage("training") as stage:
        try:
            out["training"] = train_and_promote(settings, days, instance, redis_url, on_step=stage.advance)
        except TrainingBlocked as exc:
            out["training"] = {"skipped": str(exc)}
    if "skipped" in out["training"]:
        print(f"training skipped: {out['training']['skipped']}; the service keeps its champion, or its "
              "heuristic if it has none", flush=True)
    else:
        print("\n" + format_metrics_table(out["training"]), flush=True)
    print(f"MLflow: {settings.tracking_uri}   (make mlflow-ui)\n", flush=True)
    with console.stage("candidates"):
        state = prepare_candidate_state(build_resources(settings, redis_url), instance, days[-1],
                                        days[-2] if len(days) > 1 else None)
        out["candidates"] = {"day": days[-1], "seconds": state.seconds,
                             "fanout": state.metadata.get("candidates/fanout", {})}
        candidates = sample_candidates(settings, redis_url, days[-1], state.embeddings_index)
    print(format_candidates(out["candidates"]), flush=True)
    print(candidates + "\n", flush=True)
    # the clock at the end of the last day (the simulated world's "now"), unless LOUPE_NOW says otherwise
    end_of_last_day = day_end_iso(days[-1])
    log = settings.home / "serving" / "service.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with console.stage("ranking service", title=f"ranking service (compiles the champions, warms up; log: {log}) ..."):
        ranking = start_ranking_service(settings.with_(redis_url=redis_url, now=settings.now or end_of_last_day),
                                        settings.serving_port, log=log)
        try:
            ranking.wait_ready()
        except BaseException:
            ranking.stop()
            raise
    try:  # the service has a process group of its own: Ctrl-C stops it here, in `finally`
        token = "LOUPE_API_TOKEN" if settings.api_token else settings.api_token_file
        print(f"Ranking service: http://127.0.0.1:{settings.serving_port}  (POST /v1/feed/home, "
              f"/v1/feed/explore, /v1/rank with the token of {token}; "
              f"/readyz, /metrics; log {log})", flush=True)
        feed = sample_feed(settings, days[-1])
        out["sample_feed"] = feed
        print(feed["text"] + "\n", flush=True)
        out["seconds"] = dict(console.seconds)
        print(console.timing_table(), flush=True)
        if settings.serve:
            keep_uis_up(settings)
    finally:
        ranking.stop()
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
