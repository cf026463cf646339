"""LiveReport: what live mode measured, in total and per arm of the service's A/B.

Every session is recorded with its viewer and the arm the service said it assigned (the response's
`arm`; the player never decides one), so each arm's engagements, negative actions (hides and
reports: what a viewer pushed away) and truth value per session get an interval clustered by
viewer, and the treatment's difference and lift over the control theirs (data.world.ab_stats says
how). Outside an experiment every session is the control's: one arm.

The Stories tray's figures are totals (the tray has no arm): trays served, their latencies, and
each tray's stories checked against the player's own record (data.world.live_stories.TrayCheck).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from data.world.ab_stats import ArmMetric, Comparison, compare, per_session, sample_ratio_p
from data.world.live_stories import TrayCheck

CONTROL, TREATMENT = "control", "treatment"  # as the service names its arms (serving.experiment)
METRICS = {"engagements_per_session": "engagements", "negatives_per_session": "negatives",
           "truth_value_per_session": "expected_value", "pushed_shown_per_session": "pushed_shown",
           "repeat_negatives_per_session": "repeat_negatives"}


@dataclass
class LiveReport:
    steps: int = 0
    sessions_by_surface: dict[str, int] = field(default_factory=dict)
    engagements_sent: int = 0
    events_accepted: int = 0  # lines the service took: engagements and blocks
    events_rejected: int = 0
    posts_published: int = 0
    follows: int = 0
    blocks_sent: int = 0  # blocks and mutes the viewers made from the feed (POST /v1/blocks)
    left_early: int = 0  # sessions a viewer left at a post they had pushed away (data/world/regret.py)
    degraded_pages: int = 0
    failed_requests: int = 0  # no response, so no arm: counted in total only
    engagements: list[int] = field(default_factory=list)  # realised positive actions per session
    negatives: list[float] = field(default_factory=list)  # realised hides and reports per session
    expected_value: list[float] = field(default_factory=list)  # Σ w·P(a | position) per session
    # posts of authors the viewer had pushed away, served per session (data/world/regret.py), and
    # the hides and reports among them: what feedback fatigue can prevent
    pushed_shown: list[float] = field(default_factory=list)
    repeat_negatives: list[float] = field(default_factory=list)
    viewers: list[int] = field(default_factory=list)  # who each session was
    arms: list[str] = field(default_factory=list)  # the arm the service assigned each session
    experiment: str | None = None  # the A/B the service said it routed by (None: none)
    model_versions: list[str] = field(default_factory=list)  # what ranked each session's page
    fell_back: list[bool] = field(default_factory=list)  # its arm's model was not served (the control's was)
    request_ms: list[float] = field(default_factory=list)
    # Stories (data.world.live_stories): posted and deleted by the authors, trays answered 200 and
    # every tray request's latency, the stories they held, and of those the ones the player's own
    # record says had expired at the tray's served_at_ms, had been deleted by their author at least
    # a step before, or that it never knew (not posted by it nor the lake's live ones: informative)
    stories_posted: int = 0
    stories_deleted: int = 0
    trays: int = 0
    tray_ms: list[float] = field(default_factory=list)
    stories_served: int = 0
    expired_stories_served: int = 0
    deleted_stories_served: int = 0
    unknown_stories_served: int = 0
    stories_watched: int = 0  # marked seen (POST /v1/stories/seen)

    SESSION_COLUMNS = ("viewers", "arms", "model_versions", "fell_back", "engagements", "negatives",
                       "expected_value", "pushed_shown", "repeat_negatives")

    def sessions_record(self) -> dict:
        """Every session's columns and the experiment: what `pooled` reads back."""
        return {"experiment": self.experiment, **{name: list(getattr(self, name)) for name in self.SESSION_COLUMNS}}

    @classmethod
    def pooled(cls, records: list[dict]) -> LiveReport:
        """The sessions of several plays as one report (`sessions_record` of each): a viewer who
        played on several days is one unit of every interval."""
        report = cls(experiment=next((r["experiment"] for r in reversed(records) if r["experiment"]), None))
        for record in records:
            n = len(record["viewers"])
            for name in cls.SESSION_COLUMNS:
                # a play recorded before a column existed: NaN, so its metric says it cannot be told
                getattr(report, name).extend(record.get(name, [math.nan] * n))
        return report

    @property
    def sessions(self) -> int:
        """Sessions that got a page (each recorded by `session`)."""
        return len(self.viewers)

    def session(self, viewer: int, page: dict, engagements: int, expected_value: float, negatives: int = 0,
                pushed_shown: int = 0, repeat_negatives: int = 0) -> None:
        """One session's page (the service's response) and what the truth says the viewer did."""
        arm = page["arm"]
        self.viewers.append(viewer)
        self.arms.append(arm)
        self.engagements.append(engagements)
        self.negatives.append(negatives)
        self.pushed_shown.append(pushed_shown)
        self.repeat_negatives.append(repeat_negatives)
        self.expected_value.append(expected_value)
        self.experiment = page.get("experiment")
        self.model_versions.append(page["model_version"])
        self.fell_back.append("experiment" in page["degraded"])

    def tray(self, check: TrayCheck) -> None:
        """One tray answered 200, its stories checked against the player's record."""
        self.trays += 1
        self.stories_served += check.served
        self.expired_stories_served += check.expired
        self.deleted_stories_served += check.deleted
        self.unknown_stories_served += check.unknown

    def summary(self, treatment_share: float | None = None) -> dict:
        """The figures; `treatment_share` (the service's configured split) adds the sample ratio check."""
        viewers = np.asarray(self.viewers, dtype=np.int64)
        ms = np.asarray(self.request_ms) if self.request_ms else np.asarray([math.nan])
        return {"steps": self.steps, "sessions": self.sessions, "by_surface": dict(self.sessions_by_surface),
                **_figures(self._metrics(np.ones(len(viewers), bool), viewers)),
                "engagements_sent": self.engagements_sent, "events_accepted": self.events_accepted,
                "events_rejected": self.events_rejected, "posts_published": self.posts_published,
                "follows": self.follows, "blocks_sent": self.blocks_sent, "left_early": self.left_early,
                "degraded_pages": self.degraded_pages,
                "failed_requests": self.failed_requests,
                "request_p50_ms": round(float(np.nanpercentile(ms, 50)), 1),
                "request_p99_ms": round(float(np.nanpercentile(ms, 99)), 1),
                "stories_posted": self.stories_posted, "stories_deleted": self.stories_deleted,
                "trays": self.trays, "tray_p50_ms": _percentile(self.tray_ms, 50),
                "tray_p99_ms": _percentile(self.tray_ms, 99),
                "stories_served": self.stories_served, "expired_stories_served": self.expired_stories_served,
                "deleted_stories_served": self.deleted_stories_served,
                "unknown_stories_served": self.unknown_stories_served, "stories_watched": self.stories_watched,
                **self._arms(viewers, treatment_share)}

    def _metrics(self, mine: np.ndarray, viewers: np.ndarray) -> dict[str, ArmMetric]:
        return {name: per_session(np.asarray(getattr(self, values), dtype=np.float64)[mine], viewers[mine])
                for name, values in METRICS.items()}

    def _arms(self, viewers: np.ndarray, treatment_share: float | None) -> dict:
        arms = np.asarray(self.arms)
        metrics, per_arm = {}, {}
        for arm in sorted(set(self.arms)):
            mine = arms == arm
            metrics[arm] = self._metrics(mine, viewers)
            per_arm[arm] = {"sessions": int(mine.sum()), "viewers": len(np.unique(viewers[mine])),
                            **_figures(metrics[arm]),
                            "served_by": dict(Counter(m for m, a in zip(self.model_versions, arms) if a == arm)),
                            "fell_back_to_control": int(np.asarray(self.fell_back, bool)[mine].sum())}
        out: dict = {"experiment": self.experiment, "arms": per_arm}
        if CONTROL in metrics and TREATMENT in metrics:
            out["treatment_vs_control"] = {name: _comparison(compare(metrics[TREATMENT][name], metrics[CONTROL][name]))
                                           for name in METRICS}
        if treatment_share is not None and self.experiment is not None:
            count = {arm: per_arm.get(arm, {}).get("viewers", 0) for arm in (TREATMENT, CONTROL)}
            out["sample_ratio_p"] = round(sample_ratio_p(count[TREATMENT], count[CONTROL], treatment_share), 6)
        return out


def _percentile(ms: list[float], q: float) -> float:
    """The `q`th percentile of latencies, rounded to 0.1 ms; NaN when there are none."""
    return round(float(np.percentile(ms, q)), 1) if ms else math.nan


def _figures(metrics: dict[str, ArmMetric]) -> dict[str, float]:
    out = {}
    for name, metric in metrics.items():
        out[name], out[f"{name}_ci95"] = round(metric.mean, 4), round(metric.ci95, 4)
    return out


def _comparison(c: Comparison) -> dict:
    return {"diff": round(c.diff, 4), "diff_ci95": round(c.diff_ci95, 4), "lift_pct": round(100 * c.lift, 2),
            "lift_pct_ci95": [round(100 * c.lift_low, 2), round(100 * c.lift_high, 2)]}
