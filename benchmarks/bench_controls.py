"""`make bench-controls`: the product's controls judged live by simulated users (issue 19). So far
one: feedback fatigue (docs/candidates.md), on against off.

Tiny world, a fresh workspace (.loupe/bench/controls), `make` on ports of its own (as bench-live):
1. `make run`: the world, the daily run, a champion.
2. `make live` for DAYS simulated days with a serving config whose experiment turns the fatigue
   rescorer off in the treatment arm (half the viewers): the control has it on, as shipped. The
   simulated users act as the hidden truth says through `POST /v1/events`: a hide said as a hide,
   "not interested" or "see fewer", a report as a report, some followed by a block or mute
   (`POST /v1/blocks`); the fan-out consumer turns the push-aways into their fatigue at its next
   poll (and each day's `make run` from the lake). The viewers remember what they pushed away
   (data/world/regret.py: from the world's own history on): shown that author again, they are
   likelier to hide or report, and may leave the session.
The days' sessions are pooled (the viewer the unit across them) and fatigue on is compared with
off: hides + reports per session, in whatever words (the issue's target: -20 % or better), and
engagements per session (not lower beyond the interval), with 95 % intervals clustered by viewer
(data/world/ab_stats.py).

Writes benchmarks/results/controls.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tomllib

import numpy as np

from benchmarks.bench_live import last_live_run, make
from benchmarks.common import free_port, write_result
from data.settings import REPO_ROOT, Settings
from data.world.ab_stats import compare, per_session, sample_ratio_p
from data.world.live_report import CONTROL, TREATMENT, LiveReport

WORLD = "tiny"
SPEED = 480.0  # simulated seconds per real second (as bench-live)
DAYS = 2
DAY_HOURS = 24.0
SHARE = 0.5
TARGET_NEGATIVES_PCT = -20.0


def ab_config(path) -> None:
    """The shipped serving config with an experiment whose treatment has no feedback fatigue."""
    text = (REPO_ROOT / "serving" / "config.toml").read_text()
    start, end = text.index("[experiment]"), text.index("# Candidate generation settings")
    experiment = (f'[experiment]\nenabled = true\nname = "fatigue-off"\ntreatment_share = {SHARE}\n\n'
                  "[experiment.treatment]\nfatigue = false\n\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[:start] + experiment + text[end:])
    tomllib.loads(path.read_text())  # a config that does not parse stops here, not in make live


def on_against_off(sessions: dict) -> dict:
    """Fatigue on (the control) against off (the treatment), per metric: each arm, the lift of on
    over off and its interval."""
    viewers, arms = np.asarray(sessions["viewers"]), np.asarray(sessions["arms"])
    on, off = arms == CONTROL, arms == TREATMENT
    out = {}
    for name, column in (("negatives_per_session", "negatives"), ("engagements_per_session", "engagements"),
                         ("truth_value_per_session", "expected_value")):
        values = np.asarray(sessions[column], dtype=np.float64)
        a, b = per_session(values[on], viewers[on]), per_session(values[off], viewers[off])
        c = compare(a, b)
        out[name] = {"on": round(a.mean, 4), "on_ci95": round(a.ci95, 4), "off": round(b.mean, 4),
                     "off_ci95": round(b.ci95, 4), "lift_pct": round(100 * c.lift, 2),
                     "lift_pct_ci95": [round(100 * c.lift_low, 2), round(100 * c.lift_high, 2)]}
    return out


def main(argv: list[str]) -> None:
    home = REPO_ROOT / ".loupe" / "bench" / "controls"
    ports = {"LOUPE_SERVING_PORT": free_port(), "LOUPE_REDIS_PORT": free_port(), "LOUPE_STREAM_PORT": free_port()}
    base = {**os.environ, "LOUPE_HOME": str(home), "LOUPE_WORLD": WORLD, "LOUPE_SERVE": "0",
            **{k: str(v) for k, v in ports.items()}}
    for inherited in ("LOUPE_TRAINING_CONFIG", "LOUPE_SERVING_CONFIG", "LOUPE_LIVE_AB", "LOUPE_LIVE_TREATMENT"):
        base.pop(inherited, None)
    settings = Settings.from_env(base)
    logs, plays = home / "bench_logs", home / "plays"
    seconds: dict[str, float] = {}
    if "--offline-only" not in argv:  # else: the figures again from the last run's plays
        shutil.rmtree(home, ignore_errors=True)  # the bench's own workspace: each run starts fresh
        logs.mkdir(parents=True)
        plays.mkdir()
        seconds["run"] = make("run", base, logs / "1_run.log")
        config = home / "configs" / "fatigue_off.toml"
        ab_config(config)
        for k in range(1, DAYS + 1):
            env = {**base, "LOUPE_SERVING_CONFIG": str(config), "LOUPE_CLOCK_SPEED": str(SPEED),
                   "LOUPE_LIVE_HOURS": str(DAY_HOURS)}
            seconds[f"live_L{k}"] = make("live", env, logs / f"2_live_L{k}.log")
            summary, sessions = last_live_run(settings)
            (plays / f"L{k}.json").write_text(json.dumps({"summary": summary, "sessions": sessions}))
    daily = [json.loads((plays / f"L{k}.json").read_text()) for k in range(1, DAYS + 1)]
    records = [d["sessions"] for d in daily]
    pooled = LiveReport.pooled(records)
    summary = pooled.summary(SHARE)
    figures = on_against_off(pooled.sessions_record())
    negatives, engagements = figures["negatives_per_session"], figures["engagements_per_session"]
    count = {arm: summary["arms"].get(arm, {}).get("viewers", 0) for arm in (CONTROL, TREATMENT)}
    result = {
        "world": WORLD, "clock_speed": SPEED, "days": DAYS, "hours_per_day": DAY_HOURS,
        "fatigue": {
            "control": "fatigue on (as shipped)", "treatment": "fatigue off ([experiment.treatment] fatigue = false)",
            "sessions": summary["sessions"], "viewers": count,
            "sample_ratio_p": round(sample_ratio_p(count[TREATMENT], count[CONTROL], SHARE), 6),
            "failed_requests": sum(d["summary"]["failed_requests"] for d in daily),
            "on_against_off": figures,
            "served_by": {arm: a["served_by"] for arm, a in summary["arms"].items()},
            "targets": {
                "negatives_per_session_lift_pct_le_-20": {"measured": negatives["lift_pct"],
                                                          "met": negatives["lift_pct"] <= TARGET_NEGATIVES_PCT},
                "engagements_per_session_not_lower_beyond_ci": {
                    "measured": engagements["lift_pct_ci95"], "met": engagements["lift_pct_ci95"][1] >= 0.0},
            },
            "per_day": {f"L{k}": on_against_off(d["sessions"]) for k, d in enumerate(daily, start=1)},
            "what_drives_it": "push-aways said as hide, not_interested, see_fewer or report; the truth's regret "
                              "(data/world/regret.py: half-life 7 days, from the world's history on) makes a "
                              "viewer shown an author they pushed away likelier to hide, report or leave",
            "left_early": sum(d["summary"].get("left_early", 0) for d in daily),
            "blocks_sent": sum(d["summary"].get("blocks_sent", 0) for d in daily),
        },
        "seconds": seconds,
    }
    write_result("controls", result)


if __name__ == "__main__":
    main(sys.argv[1:])
