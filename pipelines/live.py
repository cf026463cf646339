"""`make live`: after `make run`'s pipeline, simulated users use the ranking service it started for a
simulated day in accelerated time (data/world/live.py; docs/live_mode.md), with the fan-out worker
applying what they publish and follow and the stream feature worker counting what they do; then
the stream is archived into the landing folder, so the next `make run` ingests what they did, and
the run's figures go to MLflow (experiment `live`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from data.clock import Clock
from data.days import HOUR_MS, iso_ms
from data.settings import Settings, child_env, serving_secrets
from data.stream.valkey_stream import ValkeyStream
from data.world.live import LiveConfig, LivePlayer, LiveReport
from data.world.truth import TruthModel
from serving.launcher import start_process_group, stop_process_group

PROGRESS_EVERY_S = 15.0


def start_stream_workers(settings: Settings, logs: Path) -> list:
    """The event stream's consumers, each in a process group of its own: the fan-out worker (posts
    and graph changes into the feed caches) and the stream feature worker (real-time features)."""
    workers = {"fanout-worker": ["candidate_gen", "fanout-worker"],
               "stream-feature-worker": ["features.streaming", "worker"]}
    processes = []
    for name, (module, *args) in workers.items():
        command = [sys.executable, "-m", module, *args]
        processes.append(start_process_group(command, child_env(settings), logs / f"{name}.log"))
        print(f"{name} on the event stream   (log {logs / f'{name}.log'})", flush=True)
    return processes


def play(settings: Settings, hours: float) -> dict | None:
    """Play `hours` of simulated time against the service `settings` name (its port, clock and
    stream); None when the workspace has no simulated truth (a team's landing folder)."""
    if settings.truth_dir is None or not (settings.truth_dir / "meta.json").exists():
        print("live mode: skipped, it needs the simulated world's hidden truth (LOUPE_SOURCE=simulator)")
        return None
    truth = TruthModel.load(settings.truth_dir)
    clock = Clock.of(settings)
    token = serving_secrets(settings).api_token
    workers = start_stream_workers(settings, settings.home / "logs")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.serving_port}", timeout=10.0,
                          headers={"authorization": f"Bearer {token}"}) as http:
            start = clock.now_ms()
            player = LivePlayer(truth, http, ValkeyStream.of(settings), clock, LiveConfig())
            print(f"live mode: {hours:g} simulated hours from {iso_ms(start)} at {clock.speed:g}x "
                  f"(~{hours * 3600 / clock.speed / 60:.1f} min)", flush=True)
            last = [time.monotonic()]

            def progress(p: LivePlayer) -> None:
                if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                    last[0] = time.monotonic()
                    print("  " + format_live(p.report, clock.now_ms()), flush=True)

            report = player.run(start + int(hours * HOUR_MS), on_step=progress)
            # what the stream's consumers had still to do when the day ended (0: they kept up)
            backlog = {group: lag.backlog for group, lag in player.stream.lags().items()}
    finally:
        for worker in workers:
            stop_process_group(worker, timeout_s=30)
    summary = report.summary() | {"stream_backlog_at_end": backlog}
    print("live mode: " + format_live(report, clock.now_ms()), flush=True)
    print(f"live mode: the stream's consumer groups' backlog when the day ended: {backlog}", flush=True)
    log_to_mlflow(settings, summary, hours, clock.speed)
    return summary


def format_live(report: LiveReport, now_ms: int) -> str:
    s = report.summary()
    return (f"{iso_ms(now_ms)[:16]}  sessions {s['sessions']}  engagements/session "
            f"{s['engagements_per_session']} ±{s['engagements_per_session_ci95']}  truth value/session "
            f"{s['truth_value_per_session']} ±{s['truth_value_per_session_ci95']}  events {s['events_accepted']}"
            f"/{s['engagements_sent']} taken  posts {s['posts_published']}  follows {s['follows']}  "
            f"failed {s['failed_requests']}  p99 {s['request_p99_ms']} ms")


def log_to_mlflow(settings: Settings, summary: dict, hours: float, speed: float) -> None:
    import mlflow

    from training.tracking import connect, use_experiment

    connect(settings.tracking_uri, str(settings.mlflow_artifact_root))  # artifacts in the workspace
    use_experiment("live")
    with mlflow.start_run(run_name=f"live-{settings.world}"):
        mlflow.log_params({"hours": hours, "clock_speed": speed, "world": settings.world})
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float))})
        mlflow.log_dict(summary, "live_summary.json")
