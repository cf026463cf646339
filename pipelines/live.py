"""`make live`: after `make run`'s pipeline, simulated users use the ranking service it started for a
simulated day in accelerated time (data/world/live.py; docs/live_mode.md), with the fan-out worker
applying what they publish and follow and the stream feature worker counting what they do; then
the stream is archived into the landing folder, so the next `make run` ingests what they did, and
the run's figures go to MLflow (experiment `live`): per arm, when the service runs an A/B (its
serving config's [experiment]; LOUPE_LIVE_AB writes one, pipelines/live_ab.py)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import httpx

from candidate_gen.stories import live_in_lake
from data.clock import Clock
from data.days import DAY_MS, HOUR_MS, day_of_ms, iso_ms
from data.settings import Settings, child_env, serving_secrets
from data.stream.valkey_stream import ValkeyStream
from data.world.live import LiveConfig, LivePlayer
from data.world.live_played import Played
from data.world.regret import Regret
from data.world.truth import TruthModel
from pipelines.live_ab import describe, experiment_params
from serving.config import ServingConfig
from serving.launcher import start_process_group, stop_process_group

PROGRESS_EVERY_S = 15.0


def start_stream_workers(settings: Settings, logs: Path) -> list:
    """The event stream's consumers, each in a process group of its own: the fan-out worker (posts
    and graph changes into the feed caches), the stream feature worker (real-time features) and the
    search worker (new and deleted posts into the search index)."""
    workers = {"fanout-worker": ["candidate_gen", "fanout-worker"],
               "stream-feature-worker": ["features.streaming", "worker"],
               "search-worker": ["candidate_gen", "search-worker"]}
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
    serving = ServingConfig.load(settings.serving_config)  # the service's: its experiment, if any
    share = serving.experiment.treatment_share if serving.experiment.enabled else None
    token = serving_secrets(settings).api_token
    workers = start_stream_workers(settings, settings.home / "logs")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.serving_port}", timeout=10.0,
                          headers={"authorization": f"Bearer {token}"}) as http:
            # the play ends `hours` after the clock's start (LOUPE_NOW), not after the service's
            # warm-up: a day's play lands whole days, whatever the start-up took
            start = clock.now_ms()
            until = (start if clock.start_ms is None else clock.start_ms) + int(hours * HOUR_MS)
            # draws seeded by the day the play starts: each day's play differs, a replay of one is the same
            config = LiveConfig(seed=int(start // DAY_MS))
            regret = Regret.load(settings.truth_dir, settings.live_regret_file, start)
            # the lake's stories live at the end of the day the clock starts after (the last
            # ingested one, by default): the tray checks know them, and new story ids start above
            lake_stories = live_in_lake(settings.lake_dir, day_of_ms((start if clock.start_ms is None
                                                                       else clock.start_ms) - 1))
            player = LivePlayer(truth, http, ValkeyStream.of(settings), clock, config,
                                posts_file=settings.live_posts_file, regret=regret, lake_stories=lake_stories)
            print(f"live mode: from {iso_ms(start)} to {iso_ms(until)} at {clock.speed:g}x "
                  f"(~{(until - start) / 1000 / clock.speed / 60:.1f} min)", flush=True)
            if share is not None:
                print(f"live mode: A/B {describe(serving)}", flush=True)
            last = [time.monotonic()]

            def progress(p: LivePlayer) -> None:
                if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                    last[0] = time.monotonic()
                    print("  " + format_live(p.report.summary(share), clock.now_ms()), flush=True)

            report = player.run(until, on_step=progress)
            # what the stream's consumers had still to do when the day ended (0: they kept up)
            backlog = {group: lag.backlog for group, lag in player.stream.lags().items()}
    finally:
        for worker in workers:
            stop_process_group(worker, timeout_s=30)
    # the days played to their end are the next run's (prepare_landing), checked at the clock's speed
    Played.record(settings.live_played_file, start, until, clock.speed)
    summary = report.summary(share) | {"stream_backlog_at_end": backlog}
    print("live mode: " + format_live(summary, clock.now_ms()), flush=True)
    print(f"live mode: the stream's consumer groups' backlog when the day ended: {backlog}", flush=True)
    log_to_mlflow(settings, summary, report.sessions_record(), hours, clock.speed, serving)
    return summary


def format_live(s: dict, now_ms: int) -> str:
    """One progress line of a summary (LiveReport.summary), with the arms' figures when there are two."""
    line = (f"{iso_ms(now_ms)[:16]}  sessions {s['sessions']}  engagements/session "
            f"{s['engagements_per_session']} ±{s['engagements_per_session_ci95']}  hides+reports/session "
            f"{s['negatives_per_session']} ±{s['negatives_per_session_ci95']}  truth value/session "
            f"{s['truth_value_per_session']} ±{s['truth_value_per_session_ci95']}  events {s['events_accepted']}"
            f"/{s['engagements_sent'] + s['blocks_sent']} taken  posts {s['posts_published']}  "
            f"follows {s['follows']}  blocks {s['blocks_sent']}  left early {s['left_early']}  "
            f"failed {s['failed_requests']}  p99 {s['request_p99_ms']} ms  stories {s['stories_posted']} "
            f"(deleted {s['stories_deleted']})  trays {s['trays']} p99 {s['tray_p99_ms']} ms  "
            f"stories served {s['stories_served']} (expired {s['expired_stories_served']}, deleted "
            f"{s['deleted_stories_served']}, unknown {s['unknown_stories_served']})  watched {s['stories_watched']}")
    return line + ("\n    " + format_arms(s) if s.get("experiment") is not None else "")


def format_arms(s: dict) -> str:
    """Each arm's engagements per session, and the treatment's lift over the control (95 % intervals)."""
    arms = "  ".join(f"{arm} {a['engagements_per_session']} ±{a['engagements_per_session_ci95']} "
                     f"({a['sessions']} sessions, {a['viewers']} viewers)" for arm, a in s["arms"].items())
    vs = s.get("treatment_vs_control", {}).get("engagements_per_session")
    if vs is None:
        return arms
    low, high = vs["lift_pct_ci95"]
    return (f"{arms}  lift {vs['lift_pct']:+.1f}% [{low:+.1f}, {high:+.1f}]  sample ratio p "
            f"{s.get('sample_ratio_p', float('nan')):.3g}")


def log_to_mlflow(settings: Settings, summary: dict, sessions: dict, hours: float, speed: float,
                  serving: ServingConfig) -> None:
    """The run's figures into MLflow experiment `live`: with an A/B, each arm's metrics prefixed by
    the arm (`treatment_engagements_per_session`, its `_ci95`), the treatment's difference and lift
    over the control (`lift_engagements_per_session_pct` and its `_ci95_low` / `_ci95_high`), and the
    experiment's config as params; every session (`live_sessions.json`, LiveReport.sessions_record)
    for an A/B that runs over several plays to be pooled (LiveReport.pooled)."""
    import mlflow

    from training.tracking import connect, use_experiment

    connect(settings.tracking_uri, str(settings.mlflow_artifact_root))  # artifacts in the workspace
    use_experiment("live")
    experiment = serving.experiment
    name = f"live-{settings.world}" + (f"-{experiment.name}" if experiment.enabled else "")
    with mlflow.start_run(run_name=name):
        mlflow.log_params({"hours": hours, "clock_speed": speed, "world": settings.world,
                           **experiment_params(serving)})
        mlflow.log_metrics(live_metrics(summary))
        mlflow.log_dict(summary, "live_summary.json")
        mlflow.log_dict(sessions, "live_sessions.json")


def live_metrics(summary: dict) -> dict[str, float]:
    """The summary's numbers as flat MLflow metrics (NaN left out: an arm with one viewer has no interval)."""
    out = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for arm, figures in summary.get("arms", {}).items():
        out |= {f"{arm}_{k}": float(v) for k, v in figures.items() if isinstance(v, (int, float))}
    for metric, vs in summary.get("treatment_vs_control", {}).items():
        out |= {f"diff_{metric}": vs["diff"], f"diff_{metric}_ci95": vs["diff_ci95"],
                f"lift_{metric}_pct": vs["lift_pct"], f"lift_{metric}_pct_ci95_low": vs["lift_pct_ci95"][0],
                f"lift_{metric}_pct_ci95_high": vs["lift_pct_ci95"][1]}
    return {k: v for k, v in out.items() if not math.isnan(v)}
