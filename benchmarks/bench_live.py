"""`make bench-live`: rankers judged by simulated users on the real service (docs/live_mode.md), and
the loop closed: a ranker trained only on pages Loupe itself served.

Tiny world, a fresh workspace (.loupe/bench/live), `make` runs on ports of their own, each `make
live` playing one simulated day after a `make run` that ingests the day before, refreshes the
features and trains, as the daily run would:
1. `make run` with feed_ranker_v1: version 1 of each surface's model, the champion.
2. Three `make live`, days L1-L3, an A/B: the first make run trains feed_ranker_v2 as version 2
   with a config that never promotes; every day the service serves half the viewers v1 (the
   champion), half version 2 (`:2`). The days are pooled, the viewer the unit across them: v2's
   lift over v1, live (issue 16.5). The later make runs train versions of their own (never served)
   and run the train/serve skew check on the days played. Version 2 is then promoted, as a reviewer
   would after that A/B.
3. `make live` with the loop's config (feed_ranker_v2, train_days = 1, never promotes): make run
   ingests L3 and trains the loop's version on L1 alone (validated on L2, tested on L3: pages Loupe
   served, 5 % of them explored) if the skew check passes; then a day's A/B (L4): version 2 against
   `@challenger`, the newest version.
Then, in this process, by the hidden truth (NDCG@10 as % of the oracle) on the world's last day
(the simulator's pages) and on L3 (Loupe's pages; the posts published live judged as the play did),
and by each one's off-policy lift over chronological order from the explored pages where a day has
them: versions 1 and 2 (v1 and v2), and the loop's version (trained on Loupe's own pages) and 2 (on
the simulator's logging policy) when the skew check let it be trained.
`--offline-only` computes those figures again on the last run's workspace.

Writes benchmarks/results/live_loop.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import free_port, write_result
from data.days import days_after
from data.settings import REPO_ROOT, Settings
from data.world.live_report import LiveReport
from pipelines.live_ab import LIVE_AB_SHARE

WORLD = "tiny"
SPEED = 480.0  # simulated seconds per real second (the tiny world's service keeps up)
AB_DAYS = 3  # L1-L3: the v2 / v1 A/B, and the loop's training, validation and test days
DAY_HOURS = 24.0  # each make live plays one day; the loop's A/B, L4, too


def training_config(path: Path, **changes: str) -> Path:
    """training/config.toml with `key = value` lines replaced (each must be there once)."""
    text = (REPO_ROOT / "training" / "config.toml").read_text()
    for key, value in changes.items():
        text, n = re.subn(rf"^{key} = [^\n#]*", f"{key} = {value} ", text, flags=re.M)
        if n != 1:
            raise SystemExit(f"training/config.toml: `{key} = ...` found {n} times, expected once")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make(target: str, env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(["make", target], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False)
    if done.returncode != 0:
        raise SystemExit(f"make {target} failed ({done.returncode}): see {log}")
    return round(time.perf_counter() - start, 1)


def last_live_run(settings) -> tuple[dict, dict]:
    """The newest run of MLflow experiment `live`: its live_summary.json and live_sessions.json
    (pipelines/live.py)."""
    import mlflow

    from training.tracking import connect

    connect(settings.tracking_uri, str(settings.mlflow_artifact_root))
    runs = mlflow.search_runs(experiment_names=["live"], order_by=["start_time DESC"], max_results=1)
    run = runs.iloc[0].run_id
    return (mlflow.artifacts.load_dict(f"runs:/{run}/live_summary.json"),
            mlflow.artifacts.load_dict(f"runs:/{run}/live_sessions.json"))


def newest_versions(settings: Settings) -> dict[str, str]:
    """Each surface's model -> its newest registered version."""
    from training import tracking
    from training.config import SURFACE_MODELS

    client = tracking.connect(settings.tracking_uri, str(settings.mlflow_artifact_root))
    return {name: str(max(int(v.version) for v in client.search_model_versions(f"name='{name}'")))
            for name in SURFACE_MODELS.values()}


def ab_figures(summary: dict) -> dict:
    """What an A/B says: each arm, the treatment against the control, the split's health."""
    return {"sessions": summary["sessions"], "arms": summary["arms"],
            "treatment_vs_control": summary.get("treatment_vs_control"),
            "sample_ratio_p": summary.get("sample_ratio_p"),
            "failed_requests": summary["failed_requests"]}


STORY_FIGURES = ("stories_posted", "stories_deleted", "trays", "tray_p50_ms", "tray_p99_ms", "stories_served",
                 "expired_stories_served", "deleted_stories_served", "unknown_stories_served", "stories_watched")


def story_figures(summary: dict) -> dict:
    """A play's Stories tray (totals: the tray has no arm); empty for a play recorded before them."""
    return {k: summary[k] for k in STORY_FIGURES if k in summary}


def offline(settings, days: dict[str, str], versions: dict[str, str]) -> dict:
    """Per surface and day: the models' `versions` (name -> registry version) by the hidden truth,
    beside the baselines; and from that day's explored pages, each one's off-policy lift."""
    from data import columns as c
    from pipelines.defs.training.ope_assets import engagement_reward, logged_propensities
    from pipelines.resources import build_resources
    from training import tracking
    from training.config import SURFACE_MODELS
    from training.evaluate import attach_truth, evaluate
    from training.ope_validation import logged_lift
    from training.train import load_split

    resources = build_resources(settings)
    workspace, cfg = resources["workspace"], resources["training_config"].load()
    truth = workspace.truth_model()
    vocabulary = workspace.vocabulary()
    negative = {vocabulary.engagement_types[n].head for n in vocabulary.names_with_role("negative")}
    client = tracking.connect(settings.tracking_uri, str(settings.mlflow_artifact_root))
    out: dict = {}
    for surface, model_name in SURFACE_MODELS.items():
        rankers = {name: tracking.load_run_ranker(tracking.version_by_number(client, model_name, v).run_id)
                   for name, v in versions.items()}
        out[surface] = {}
        for label, day in days.items():
            test = attach_truth(load_split(settings.lake_dir, surface, day, cfg).test, truth)
            report = evaluate(test, rankers, next(iter(rankers)), seed=cfg.seed)
            oracle = report["rankers"]["oracle"]["ndcg10"]
            figures = {name: {"ndcg10": m["ndcg10"], "pct_of_oracle": 100.0 * m["ndcg10"] / oracle,
                              "ndcg10_realised": m["ndcg10_realised"]}
                       for name, m in report["rankers"].items()}
            logged = test.merge(logged_propensities(settings.lake_dir, [day]), on=[c.REQUEST_ID, c.POST_ID],
                                how="left")
            ope = {}
            for name, ranker in rankers.items():
                try:
                    lift = logged_lift(logged, ranker.predict(ranker.matrix(logged)),
                                       engagement_reward(logged, negative), seed=cfg.ab_seed)
                    ope[name] = {k: {"lift_pct": e["lift_pct"], "ci95_pct": e.get("ci95_pct")}
                                 for k, e in lift["estimators"].items()}
                except ValueError as exc:  # no explored page that day (the simulator's own days)
                    ope[name] = {"skipped": str(exc)}
            out[surface][label] = {"day": day, "requests": report["requests"], "rows": report["rows"],
                                   "rankers": figures, "ope_lift_vs_chronological": ope}
    return out


def skew_of(settings: Settings, days: list[str]) -> dict:
    """The train/serve skew check on each played day, as make run's blocking check computes it."""
    from data.world.live_played import Played
    from pipelines.resources import build_resources
    from training import tracking
    from training.skew import SkewConfig, check_day, registry_feature_names

    store = build_resources(settings)["feast"].store()
    names = registry_feature_names(tracking.connect(settings.tracking_uri, str(settings.mlflow_artifact_root)))
    played = Played.read(settings.live_played_file)
    out = {}
    for day in days:
        report = check_day(settings.lake_dir, day, store, names, SkewConfig.load(None), played.speed_of(day))
        failing = {n: f for n, f in report.features.items() if f.mismatches}
        out[day] = {"passed": report.passed, "rows_compared": report.rows, "summary": report.summary(),
                    "stream_delay_s": report.stream_delay_s, "delayed_rate_per_feature": report.delayed_rates,
                    "mismatch_rate_per_failing_feature": {n: round(r, 4) for n, r in report.mismatch_rates.items()
                                                          if n in report.failing},
                    "worst_examples": {n: f.worst[:2] for n, f in sorted(failing.items(),
                                                                         key=lambda kv: -kv[1].rate)[:5]}}
    return out


def promote(settings: Settings, version: str) -> None:
    """Make `version` of both surfaces' models the champion, as a reviewer would after its A/B."""
    from training import tracking
    from training.config import SURFACE_MODELS

    client = tracking.connect(settings.tracking_uri, str(settings.mlflow_artifact_root))
    for model_name in SURFACE_MODELS.values():
        tracking.promote(client, model_name, version)


def main(argv: list[str]) -> None:
    home = REPO_ROOT / ".loupe" / "bench" / "live"
    ports = {"LOUPE_SERVING_PORT": free_port(), "LOUPE_REDIS_PORT": free_port(), "LOUPE_STREAM_PORT": free_port()}
    base = {**os.environ, "LOUPE_HOME": str(home), "LOUPE_WORLD": WORLD, "LOUPE_SERVE": "0",
            **{k: str(v) for k, v in ports.items()}}
    base.pop("LOUPE_TRAINING_CONFIG", None)
    settings = Settings.from_env(base)
    configs, logs, plays = home / "configs", home / "bench_logs", home / "plays"
    seconds: dict[str, float] = {}
    if "--offline-only" not in argv:  # else: the figures again from the last run's workspace
        shutil.rmtree(home, ignore_errors=True)  # the bench's own workspace: each run starts fresh
        logs.mkdir(parents=True)
        plays.mkdir()
        # 1. feed_ranker_v1: version 1, champion
        v1 = training_config(configs / "v1.toml", service='"feed_ranker_v1"')
        seconds["run_v1"] = make("run", {**base, "LOUPE_TRAINING_CONFIG": str(v1)}, logs / "1_run_v1.log")
        # 2. feed_ranker_v2 (version 2, never promoted here) against v1, live, a day per make live
        v2 = training_config(configs / "v2.toml", min_improvement="1.0")
        for k in range(1, AB_DAYS + 1):
            env = {**base, "LOUPE_LIVE_AB": "1", "LOUPE_LIVE_TREATMENT": ":2", "LOUPE_CLOCK_SPEED": str(SPEED),
                   "LOUPE_TRAINING_CONFIG": str(v2), "LOUPE_LIVE_HOURS": str(DAY_HOURS)}
            seconds[f"live_v2_vs_v1_L{k}"] = make("live", env, logs / f"2_live_v2_vs_v1_L{k}.log")
            summary, sessions = last_live_run(settings)
            (plays / f"v2_vs_v1_L{k}.json").write_text(json.dumps({"summary": summary, "sessions": sessions}))
        promote(settings, "2")
        # 3. the loop's version, trained on L1 (Loupe's pages), against the v2 champion, live for L4
        before = newest_versions(settings)
        loop = training_config(configs / "loop.toml", train_days="1", min_improvement="1.0")
        seconds["live_loop"] = make("live", {**base, "LOUPE_LIVE_AB": "1", "LOUPE_LIVE_TREATMENT": "@challenger",
                                             "LOUPE_CLOCK_SPEED": str(SPEED), "LOUPE_TRAINING_CONFIG": str(loop),
                                             "LOUPE_LIVE_HOURS": str(DAY_HOURS)}, logs / "3_live_loop.log")
        summary, sessions = last_live_run(settings)
        after = newest_versions(settings)
        (plays / "loop_L4.json").write_text(json.dumps({"summary": summary, "sessions": sessions,
                                                        "versions_before": before, "versions_after": after}))
    meta = json.loads((settings.truth_dir / "meta.json").read_text())
    world_last = days_after(meta["start"], meta["n_days"] - 1)
    played = [days_after(world_last, k) for k in range(1, AB_DAYS + 1)]
    start = time.perf_counter()
    daily = [json.loads((plays / f"v2_vs_v1_L{k}.json").read_text()) for k in range(1, AB_DAYS + 1)]
    pooled = LiveReport.pooled([d["sessions"] for d in daily]).summary(LIVE_AB_SHARE)
    v2_vs_v1_live = {"days": played, "hours_per_day": DAY_HOURS, "control": "feed_ranker_v1 (version 1, champion)",
                     "treatment": "feed_ranker_v2 (version 2)", **ab_figures(pooled),
                     "per_day": {day: ab_figures(d["summary"]) | {"stories": story_figures(d["summary"])}
                                 for day, d in zip(played, daily, strict=True)}}
    days = {"simulator_last_day": world_last, "loupe_served_l3": played[-1]}
    v2_vs_v1_offline = offline(settings.with_(training_config=configs / "loop.toml"), days, {"v1": "1", "v2": "2"})
    loop_play = json.loads((plays / "loop_L4.json").read_text())
    loop_versions = {m: v for m, v in loop_play["versions_after"].items() if v != loop_play["versions_before"][m]}
    loop: dict = {"trained_on": "L1 only (pages Loupe served), validated on L2, tested on L3",
                  "played_days": played, "skew_check": skew_of(settings, played)}
    loop_ab = {"hours": DAY_HOURS, **ab_figures(loop_play["summary"]), "stories": story_figures(loop_play["summary"])}
    if len(loop_versions) == len(loop_play["versions_after"]) and len(set(loop_versions.values())) == 1:
        version = next(iter(loop_versions.values()))
        loop["version"] = version
        loop["offline"] = offline(settings.with_(training_config=configs / "loop.toml"), days,
                                  {"loop_trained": version, "simulator_trained": "2"})
        loop["live"] = {"control": "version 2 (the simulator's pages), champion",
                        "treatment": f"version {version} (Loupe's pages)", **loop_ab}
    else:  # the blocking skew check kept make run from training on the played days
        loop["blocked"] = f"no loop version was trained (newest versions {loop_play['versions_after']})"
        loop["live_without_loop_version"] = {"control": "version 2, champion",
                                             "treatment": f"@challenger: {loop_play['versions_after']}", **loop_ab}
    seconds["offline"] = round(time.perf_counter() - start, 1)
    result = {"world": WORLD, "clock_speed": SPEED, "world_last_day": world_last,
              "v2_vs_v1_live": v2_vs_v1_live, "v2_vs_v1_offline": v2_vs_v1_offline, "loop": loop, "seconds": seconds}
    write_result("live_loop", result)


if __name__ == "__main__":
    main(sys.argv[1:])
