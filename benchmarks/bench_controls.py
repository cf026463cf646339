"""`make bench-controls`: the product's controls judged live by simulated users (issue 19), each by
an A/B of its own against itself switched the other way: feedback fatigue, the content labels'
outcomes (integrity) and the new-author boost.

Tiny world, a fresh workspace (.loupe/bench/controls), `make` on ports of its own (as bench-live):
1. `make run`: the world, the daily run, a champion.
2. `make live`, one simulated day after another, each with a serving config whose experiment
   switches one control in the treatment arm (half the viewers):
   - fatigue (FATIGUE_DAYS days): the control as shipped (on), the treatment off;
   - integrity (one day): the control as shipped (on), the treatment off;
   - the new-author boost (one day): shipped off, so the control is off and the treatment on, at
     BOOST_THRESHOLD impressions (the shipped 1,000 is above ~98 % of this world's authors).
   The simulated users act as the hidden truth says through `POST /v1/events`: a hide said as a
   hide, "not interested" or "see fewer", a report as a report, some followed by a block or mute
   (`POST /v1/blocks`); the viewers remember what they pushed away (data/world/regret.py): shown
   that author again, they are likelier to hide or report, and may leave the session.
Each experiment's sessions are pooled over its days (the viewer the unit across them), with 95 %
intervals clustered by viewer (data/world/ab_stats.py):
- fatigue on against off: hides + reports per session, in whatever words (the issue's target:
  -20 % or better), and engagements per session (not lower beyond the interval); and its reach,
  from the world's history: the share of hides and reports fatigue could at most have prevented
  (benchmarks/fatigue_reach.py);
- integrity on against off: the served impressions (the day's stream, archived in the landing
  folder) of posts labelled as the daily build labelled them the night before, per 1,000
  impressions, by the outcome their labels have (in the off arm: would have), and the sessions'
  metrics;
- the boost on against off: new authors' (impressions_28d below the threshold the night before)
  share of the impressions, and the sessions' metrics (its cost).
`--offline-only` computes the figures again from the last run's plays and workspace.

Writes benchmarks/results/controls.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.bench_live import last_live_run, make
from benchmarks.common import RESULTS_DIR, free_port, write_result
from benchmarks.fatigue_reach import fatigue_reach
from candidate_gen.block import IN_NETWORK_NAMES
from candidate_gen.config import CandidateConfig
from candidate_gen.explore.lake_reads import read_posts
from candidate_gen.integrity import labels_from_lake
from data import columns as c
from data import lake
from data.days import days_before
from data.settings import REPO_ROOT, Settings
from data.world.ab_stats import compare, per_session, sample_ratio_p
from data.world.live_report import CONTROL, TREATMENT, LiveReport
from serving.stages.integrity_filter_stage import IntegrityFilterStage

WORLD = "tiny"
SPEED = 480.0  # simulated seconds per real second (as bench-live)
DAY_HOURS = 24.0
SHARE = 0.5
FATIGUE_DAYS = 2
BOOST_THRESHOLD = 100.0
TARGET_NEGATIVES_PCT = -20.0
# experiment -> (the treatment's knob, its value, days, the [new_author_boost] lines to set)
EXPERIMENTS: dict[str, tuple[str, bool, int, dict[str, str]]] = {
    "fatigue": ("fatigue", False, FATIGUE_DAYS, {}),
    "integrity": ("integrity", False, 1, {}),
    "new_author_boost": ("new_author_boost", True, 1, {"threshold": str(BOOST_THRESHOLD)}),
}
METRICS = (("negatives_per_session", "negatives"), ("engagements_per_session", "engagements"),
           ("truth_value_per_session", "expected_value"),
           # what fatigue acts on: posts of authors the viewer pushed away, shown, and hidden or reported again
           ("pushed_shown_per_session", "pushed_shown"), ("repeat_negatives_per_session", "repeat_negatives"))


def ab_config(path: Path, knob: str, value: bool, boost: dict[str, str]) -> None:
    """The shipped serving config with an experiment whose treatment sets `knob` to `value`, and
    `boost` replacing lines of its [new_author_boost] table."""
    text = (REPO_ROOT / "serving" / "config.toml").read_text()
    for key, setting in boost.items():
        start = text.index("[new_author_boost]")
        at = text.index(f"\n{key} = ", start) + 1
        text = text[:at] + f"{key} = {setting}  # (bench-controls)" + text[text.index("\n", at):]
    start, end = text.index("[experiment]"), text.index("# Candidate generation settings")
    experiment = (f'[experiment]\nenabled = true\nname = "{knob}-{"on" if value else "off"}"\n'
                  f"treatment_share = {SHARE}\n\n[experiment.treatment]\n{knob} = {str(value).lower()}\n\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[:start] + experiment + text[end:])
    tomllib.loads(path.read_text())  # a config that does not parse stops here, not in make live


def on_against_off(sessions: dict, on_arm: str = CONTROL) -> dict:
    """The control switched on (`on_arm`) against off, per metric: each arm, the lift of on over
    off and its interval."""
    viewers, arms = np.asarray(sessions["viewers"]), np.asarray(sessions["arms"])
    on = arms == on_arm
    off = (arms == (TREATMENT if on_arm == CONTROL else CONTROL))
    out = {}
    for name, column in METRICS:
        values = np.asarray(sessions[column], dtype=np.float64)
        a, b = per_session(values[on], viewers[on]), per_session(values[off], viewers[off])
        d = compare(a, b)
        out[name] = {"on": round(a.mean, 4), "on_ci95": round(a.ci95, 4), "off": round(b.mean, 4),
                     "off_ci95": round(b.ci95, 4), "lift_pct": round(100 * d.lift, 2),
                     "lift_pct_ci95": [round(100 * d.lift_low, 2), round(100 * d.lift_high, 2)]}
    return out


def landed_impressions(settings: Settings) -> set[str]:
    return {str(p) for p in (settings.landing_dir / "impressions").glob("*/stream-*.jsonl")}


def played_day(files: list[str]) -> str | None:
    """The day a play served most of its impressions on (its last minutes may spill past midnight)."""
    lines = Counter()
    for f in files:
        with open(f, "rb") as handle:
            lines[Path(f).parent.name] += sum(1 for _ in handle)
    return lines.most_common(1)[0][0] if lines else None


def served(files: list[str]) -> pd.DataFrame:
    """The served impressions of a play: post_id, source, arm."""
    frames = [pd.read_json(f, lines=True, dtype={c.POST_ID: "int64"}) for f in sorted(files)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[c.POST_ID, c.SOURCE, c.ARM])
    return frame[[c.POST_ID, c.SOURCE, c.ARM]]


def authors_of(settings: Settings, day: str) -> pd.Series:
    """post -> author: the lake's posts through `day`, and the posts published live on it (landed)."""
    lake_posts = read_posts(settings.lake_dir, day)
    live = [pd.read_json(f, lines=True) for f in (settings.landing_dir / "posts" / day).glob("stream-*.jsonl")]
    frame = pd.concat([lake_posts[[c.POST_ID, c.AUTHOR_ID]], *(f[[c.POST_ID, c.AUTHOR_ID]] for f in live)])
    return frame.drop_duplicates(c.POST_ID).set_index(c.POST_ID)[c.AUTHOR_ID].astype("int64")


def integrity_served(settings: Settings, play: dict) -> dict:
    """Per arm: impressions, and per 1,000 of them those of labelled posts, by the outcome their
    labels have (integrity on) or would have had (off), with the labels in force that day."""
    day = play["day"]
    cfg = CandidateConfig.load().integrity
    labels, _ = labels_from_lake(settings.lake_dir, days_before(day, 1), cfg.rules)
    stage = IntegrityFilterStage(cfg)
    impressions = served(play["impression_files"])
    author = authors_of(settings, day)
    out = {"posts_labelled": len(labels.posts), "accounts_labelled": len(labels.accounts), "labels": labels.counts()}
    for arm in (CONTROL, TREATMENT):
        mine = impressions[impressions[c.ARM] == arm]
        outcomes: Counter = Counter()
        for post, source in zip(mine[c.POST_ID].tolist(), mine[c.SOURCE].tolist(), strict=True):
            found = labels.posts.get(post, set()) | labels.accounts.get(int(author.get(post, -1)), set())
            if found:
                decided = stage.outcomes(frozenset(found), source in IN_NETWORK_NAMES) or {"allow"}
                outcomes["drop" if "drop" in decided else "+".join(sorted(decided))] += 1
        n = len(mine)
        out[arm] = {"impressions": n, "labelled_per_1000": round(1000 * sum(outcomes.values()) / max(n, 1), 3),
                    "by_outcome_per_1000": {k: round(1000 * v / max(n, 1), 3) for k, v in sorted(outcomes.items())}}
    return out


def boost_reach(settings: Settings, play: dict, threshold: float) -> dict:
    """Per arm: impressions, and the share of them of new authors (fewer than `threshold`
    impressions in the 28 days to the night before, the author feature's window)."""
    day = play["day"]
    before = days_before(day, 1)
    first = days_before(before, 27)
    days = [d for d in lake.partition_days(settings.lake_dir, "impressions") if first <= d <= before]
    past = lake.read_partitions(settings.lake_dir, "impressions", days, [c.POST_ID])
    author = authors_of(settings, day)
    seen = past[c.POST_ID].map(author).value_counts()
    impressions = served(play["impression_files"])
    out: dict = {"threshold": threshold,
                 "authors_below_threshold_pct": round(100 * float((seen < threshold).mean()), 1) if len(seen) else None}
    for arm in (CONTROL, TREATMENT):
        mine = impressions[impressions[c.ARM] == arm]
        counts = mine[c.POST_ID].map(author).map(seen).fillna(0)
        share = round(100 * float((counts < threshold).mean()), 2) if len(mine) else None
        out[arm] = {"impressions": len(mine), "new_author_share_pct": share}
    return out


def experiment_figures(name: str, plays: list[dict], settings: Settings) -> dict:
    knob, value, _, _ = EXPERIMENTS[name]
    on_arm = TREATMENT if value else CONTROL
    pooled = LiveReport.pooled([p["sessions"] for p in plays])
    summary = pooled.summary(SHARE)
    count = {arm: summary["arms"].get(arm, {}).get("viewers", 0) for arm in (CONTROL, TREATMENT)}
    out = {
        "on": on_arm, "treatment": f"[experiment.treatment] {knob} = {str(value).lower()}",
        "days": [p["day"] for p in plays], "sessions": summary["sessions"], "viewers": count,
        "sample_ratio_p": round(sample_ratio_p(count[TREATMENT], count[CONTROL], SHARE), 6),
        "failed_requests": sum(p["summary"]["failed_requests"] for p in plays),
        "left_early": sum(p["summary"].get("left_early", 0) for p in plays),
        "blocks_sent": sum(p["summary"].get("blocks_sent", 0) for p in plays),
        "on_against_off": on_against_off(pooled.sessions_record(), on_arm),
        "served_by": {arm: a["served_by"] for arm, a in summary["arms"].items()},
    }
    if len(plays) > 1:
        out["per_day"] = {p["day"]: on_against_off(p["sessions"], on_arm) for p in plays}
    return out


def main(argv: list[str]) -> None:
    home = REPO_ROOT / ".loupe" / "bench" / "controls"
    ports = {"LOUPE_SERVING_PORT": free_port(), "LOUPE_REDIS_PORT": free_port(), "LOUPE_STREAM_PORT": free_port()}
    base = {**os.environ, "LOUPE_HOME": str(home), "LOUPE_WORLD": WORLD, "LOUPE_SERVE": "0",
            **{k: str(v) for k, v in ports.items()}}
    for inherited in ("LOUPE_TRAINING_CONFIG", "LOUPE_SERVING_CONFIG", "LOUPE_LIVE_AB", "LOUPE_LIVE_TREATMENT"):
        base.pop(inherited, None)
    settings = Settings.from_env(base)
    logs, plays_dir = home / "bench_logs", home / "plays"
    seconds: dict[str, float] = {}
    if "--offline-only" not in argv:  # else: the figures again from the last run's plays
        shutil.rmtree(home, ignore_errors=True)  # the bench's own workspace: each run starts fresh
        logs.mkdir(parents=True)
        plays_dir.mkdir()
        seconds["run"] = make("run", base, logs / "1_run.log")
        for name, (knob, value, days, boost) in EXPERIMENTS.items():
            config = home / "configs" / f"{name}.toml"
            ab_config(config, knob, value, boost)
            for k in range(1, days + 1):
                env = {**base, "LOUPE_SERVING_CONFIG": str(config), "LOUPE_CLOCK_SPEED": str(SPEED),
                       "LOUPE_LIVE_HOURS": str(DAY_HOURS)}
                before = landed_impressions(settings)
                seconds[f"live_{name}_L{k}"] = make("live", env, logs / f"2_live_{name}_L{k}.log")
                summary, sessions = last_live_run(settings)
                files = sorted(landed_impressions(settings) - before)
                (plays_dir / f"{name}_L{k}.json").write_text(json.dumps(
                    {"summary": summary, "sessions": sessions, "impression_files": files}))
    plays = {name: [json.loads((plays_dir / f"{name}_L{k}.json").read_text()) for k in range(1, days + 1)]
             for name, (_, _, days, _) in EXPERIMENTS.items()}
    for play in (p for runs in plays.values() for p in runs):
        play["day"] = played_day(play["impression_files"])
    result: dict = {"world": WORLD, "clock_speed": SPEED, "hours_per_day": DAY_HOURS}
    fatigue = experiment_figures("fatigue", plays["fatigue"], settings)
    negatives, engagements = (fatigue["on_against_off"][k] for k in ("negatives_per_session",
                                                                     "engagements_per_session"))
    fatigue["targets"] = {
        "negatives_per_session_lift_pct_le_-20": {"measured": negatives["lift_pct"],
                                                  "met": negatives["lift_pct"] <= TARGET_NEGATIVES_PCT},
        "engagements_per_session_not_lower_beyond_ci": {"measured": engagements["lift_pct_ci95"],
                                                        "met": engagements["lift_pct_ci95"][1] >= 0.0},
    }
    fatigue["what_drives_it"] = ("push-aways said as hide, not_interested, see_fewer or report; the truth's regret "
                                 "(data/world/regret.py: half-life 7 days, from the world's history on) makes a "
                                 "viewer shown an author they pushed away likelier to hide, report or leave")
    fatigue["reach"] = fatigue_reach(settings.truth_dir, settings.lake_dir,
                                     CandidateConfig.load().fatigue.window_ms)  # what it can at most prevent
    result["fatigue"] = fatigue
    integrity = experiment_figures("integrity", plays["integrity"], settings)
    integrity["served"] = integrity_served(settings, plays["integrity"][-1])
    result["integrity"] = integrity
    boost = experiment_figures("new_author_boost", plays["new_author_boost"], settings)
    boost["reach"] = boost_reach(settings, plays["new_author_boost"][-1], BOOST_THRESHOLD)
    result["new_author_boost"] = boost
    result["seconds"] = seconds
    kept = RESULTS_DIR / "controls.json"  # its `stories` section is make bench-stories'
    if kept.exists() and "stories" in (previous := json.loads(kept.read_text())):
        result["stories"] = previous["stories"]
    write_result("controls", result)


if __name__ == "__main__":
    main(sys.argv[1:])
