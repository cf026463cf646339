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

import subprocess
import sys
from pathlib import Path

import dagster as dg

from data.days import day_end_iso, day_end_ms
from data.quiet import filter_third_party_warnings
from data.redis_server import redis_endpoint
from data.settings import Settings, export_dagster_env, get_settings, serving_secrets
from pipelines.console import RunConsole
from pipelines.operations import (
    IngestStopped,
    Landing,
    NoLandingData,
    TrainingBlocked,
    build_features,
    claim_lake,
    ingest_days,
    prepare_candidate_state,
    prepare_landing,
    train_and_promote,
)
from pipelines.partitions import register_days
from pipelines.resources import build_resources
from serving.launcher import start_ranking_service

DAGSTER_PORT = 3000
MLFLOW_PORT = 5000


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
