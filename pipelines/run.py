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

This module is the script: the steps themselves are in pipelines/operations.py (shared with the
benchmarks and the tests), the summary it prints of them in pipelines/summary.py.

The console shows Loupe's summary only (pipelines/console.py: a progress line per long stage on a
terminal, plain lines elsewhere); the steps' events stay in the Dagster UI, the service's output in
LOUPE_HOME/serving/service.log.

Redis is the configured REDIS_URL or an embedded Valkey server kept under LOUPE_HOME/redis; the
event stream (docs/event_stream.md) LOUPE_STREAM_URL or a durable embedded one under LOUPE_HOME/stream.
The service logs its served impressions onto the stream; a run lands what the stream holds in the
landing folder before it lists the days, and the Dagster sensor `stream_archive_sensor` does so every
30 s while the UIs are up.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import dagster as dg

from data.days import day_end_iso
from data.quiet import filter_third_party_warnings
from data.redis_server import redis_endpoint
from data.settings import Settings, export_dagster_env, get_settings
from data.stream.archiver import ArchiveReport
from pipelines.console import RunConsole
from pipelines.live import play, start_stream_workers
from pipelines.live_ab import ab_serving_config
from pipelines.operations import (
    IngestStopped,
    Landing,
    NoLandingData,
    TrainingBlocked,
    archive_stream,
    build_features,
    claim_lake,
    ingest_days,
    prepare_candidate_state,
    prepare_landing,
    train_and_promote,
)
from pipelines.partitions import register_days
from pipelines.resources import build_resources
from pipelines.summary import (
    format_candidates,
    format_features,
    format_ingest_table,
    format_metrics_table,
    sample_candidates,
    sample_feed,
)
from serving.launcher import start_process_group, start_ranking_service, stop_process_group

DAGSTER_PORT = 3000
MLFLOW_PORT = 5000


def mlflow_ui_command(settings: Settings, port: int = MLFLOW_PORT) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.tracking_uri,
            "--default-artifact-root", str(settings.mlflow_artifact_root), "--host", "127.0.0.1",
            "--port", str(port)]


def keep_uis_up(settings: Settings) -> None:
    """Keep the Dagster and MLflow UIs up in the foreground until Ctrl-C (Redis, and the ranking
    service `make run` started, stay up with this process). Their output goes to log files under
    LOUPE_HOME/logs; each runs in a process group of its own, stopped whole at the end (MLflow's UI
    starts job-runner processes that outlive a plain terminate)."""
    logs = settings.home / "logs"
    dagster = [sys.executable, "-m", "dagster", "dev", "-m", "pipelines.definitions", "-p", str(DAGSTER_PORT)]
    processes = [start_process_group(dagster, None, logs / "dagster-ui.log")]
    print(f"\nDagster UI: http://127.0.0.1:{DAGSTER_PORT}   (log {logs / 'dagster-ui.log'})", flush=True)
    # posts and graph changes said on the stream (python -m candidate_gen publish ...) reach the feeds;
    # engagements (POST /v1/events) the real-time features
    processes += start_stream_workers(settings, logs)
    if settings.tracking_uri.startswith("sqlite:"):  # a tracking server has its own UI
        processes.append(start_process_group(mlflow_ui_command(settings), None, logs / "mlflow-ui.log"))
        print(f"MLflow UI:  http://127.0.0.1:{MLFLOW_PORT}   (log {logs / 'mlflow-ui.log'})", flush=True)
    print("(Ctrl-C stops everything)", flush=True)
    try:
        processes[0].wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            stop_process_group(process, timeout_s=30)


def print_archived(report: ArchiveReport | None, settings: Settings) -> None:
    if report is not None and report.entries:
        print(f"event stream: {report.entries} events landed in {settings.landing_dir} "
              f"(docs/event_stream.md)", flush=True)


def exit_on_sigterm(signum: int, frame) -> None:
    """A supervisor's SIGTERM unwinds like Ctrl-C: the `finally` blocks stop the ranking service and
    the UIs (process groups of their own, which would outlive this process) and the embedded Redis."""
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
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
    with redis_endpoint(settings.redis_url, settings.redis_dir, port) as redis_url, \
            redis_endpoint(settings.stream_url, settings.stream_dir, settings.stream_port, durable=True) as stream_url:
        print(f"redis: {redis_url}   event stream: {stream_url}")
        settings = settings.with_(stream_url=stream_url)  # the service's served impressions go onto it
        if argv[:1] == ["ui"]:
            keep_uis_up(settings)
            return
        try:
            with console.stage("landing", title=""):
                print_archived(archive_stream(settings), settings)
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
        # the service's clock; live mode's simulated users read the same one (same start, speed, anchor)
        served = settings.with_(redis_url=redis_url, now=settings.now or end_of_last_day,
                                clock_anchor_ms=settings.clock_anchor_ms or int(time.time() * 1000))
        if settings.live and settings.live_ab:  # the service splits the simulated users into two arms
            served = served.with_(serving_config=ab_serving_config(settings))
        ranking = start_ranking_service(served, settings.serving_port, log=log)
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
        if settings.live:
            with console.stage("live mode", title="live mode: simulated users on the ranking service ..."):
                out["live"] = play(served, settings.live_hours)
                print_archived(archive_stream(settings), settings)
        out["seconds"] = dict(console.seconds)
        print(console.timing_table(), flush=True)
        if settings.serve:
            keep_uis_up(settings)
    finally:
        ranking.stop()
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
