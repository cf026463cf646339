"""Live mode: simulated users use the real ranking service (docs/live_mode.md).

Each step of simulated time, on the clock the service runs (data/clock.py: same start, speed and
anchor):
    authors publish posts         -> the event stream (posts log), which the fan-out worker applies
    viewers open Home or Explore  -> POST /v1/feed/home | /v1/feed/explore over HTTP
    they act on what they were served, as the hidden truth model says (position bias included)
                                  -> POST /v1/events (engagements), idempotent by event_id
    a hide is said as "not interested", "see fewer" or a hide, and is remembered: shown that author
    again, the viewer is likelier to hide or report and may leave (data/world/regret.py)
    a report may become a block, a hide a mute or block (as the daily world reacts, a day later
                                    there)   -> POST /v1/blocks (blocks log)
    a profile visit to an author they do not follow may become a follow -> the stream (follows log)
    authors post stories, a few deleted later by them  -> the stream (stories log; data.world.live_stories)
    a share of viewers open the Stories tray first     -> POST /v1/stories/tray, and the stories they
                                    watch                -> POST /v1/stories/seen
and the report (data.world.live_report) counts sessions, engagements per session (realised, by the
truth) and the truth's expected value per session, with 95% intervals, in total and per arm of the
service's A/B: the arm is the one the service says it assigned the viewer, never the player's choice;
and each tray's stories, checked against what the player itself posted and deleted (expired or
deleted ones served).

New posts take their hidden qualities from an earlier post of the same author (the truth model
needs them to judge a viewer's reaction); the simulator's truth is extended in memory, never written.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from data import columns as c
from data.clock import Clock
from data.days import MINUTE_MS, iso_ms
from data.stream.entries import Event
from data.stream.said import graph_event, post_event
from data.stream.valkey_stream import ValkeyStream
from data.world.dynamics import BLOCK_AFTER_HIDE_P, BLOCK_AFTER_REPORT_P, MUTE_AFTER_HIDE_P
from data.world.live_posts import LivePosts
from data.world.live_report import LiveReport
from data.world.live_stories import LiveStories
from data.world.regret import Regret, leave, said_as
from data.world.truth import TRUE_VALUE_WEIGHTS, TruthModel, examine_probability, sample_outcomes

# realised action -> the engagements log's type (a long dwell is a dwell event with its length)
LOGGED_AS = {"like": "like", "comment": "comment", "share": "share", "save": "save",
             "profile_visit": "profile_visit"}
POSITIVE = ("like", "comment", "share", "save", "profile_visit", "long_dwell")
NEGATIVE = ("hide", "report")  # what a viewer pushed away (feedback fatigue's target), in any words
DWELL_EMIT_MS = 2_000  # shorter dwells are scrolling past: no event (as the simulator logs)


@dataclass(frozen=True)
class LiveConfig:
    sessions_per_step: int = 8  # sessions each step of simulated time
    step_ms: int = 5 * MINUTE_MS  # simulated time per step
    page: int = 20  # posts a session asks for
    explore_share: float = 0.3  # sessions that open Explore instead of Home
    posts_per_step: float = 4.0  # Poisson mean of new posts per step
    follow_after_visit: float = 0.3  # a profile visit to an unfollowed author becomes a follow
    stories_per_step: float = 2.0  # Poisson mean of new stories per step (authors: the viewers)
    story_delete_share: float = 0.05  # stories their author deletes, within 12 h (data.world.live_stories)
    tray_share: float = 0.5  # sessions that open the Stories tray first
    seed: int = 7


class LivePlayer:
    def __init__(self, truth: TruthModel, http: httpx.Client, stream: ValkeyStream, clock: Clock,
                 config: LiveConfig = LiveConfig(), viewers: np.ndarray | None = None,
                 posts_file: Path | None = None, regret: Regret | None = None,
                 lake_stories: pd.DataFrame | None = None):
        """`http`: a client of the ranking service (base URL and bearer token set). `viewers`: who
        may open the app (default: every user of the truth). `posts_file`: where the posts published
        live are kept between plays (LivePosts). `regret`: what viewers remember pushing away
        (default: nothing yet). `lake_stories`: the lake's stories live when the play starts
        (candidate_gen.stories.live_in_lake), known to the tray checks (default: none)."""
        self.truth, self.http, self.stream, self.clock, self.config = truth, http, stream, clock, config
        self.rng = np.random.default_rng(config.seed)
        # the stories' draws apart: the feed's sessions draw as they did before stories existed
        self.story_rng = np.random.default_rng([config.seed, 1])
        self.stories = LiveStories(clock.now_ms(), lake_stories)
        self.posts = LivePosts(truth, posts_file)
        self.regret = regret if regret is not None else Regret()
        self.block_changes: list[dict] = []  # this step's blocks and mutes, for POST /v1/blocks
        self.viewers = viewers if viewers is not None else np.arange(1, len(truth.users.propensity))
        self.report = LiveReport()

    def step(self) -> None:
        """One step of simulated time, at the clock's now."""
        cfg, rng, now = self.config, self.rng, self.clock.now_ms()
        published = self.posts.publish(rng, now, int(rng.poisson(cfg.posts_per_step)))
        events = [post_event(p, a, now, hashtags=tags) for p, a, tags in published]
        srng, step = self.story_rng, self.report.steps
        authors = srng.choice(self.viewers, int(srng.poisson(cfg.stories_per_step)))
        events += self.stories.deletions(now, step) + self.stories.post(srng, authors, now, cfg.story_delete_share)
        engagements: list[dict] = []
        for viewer in rng.choice(self.viewers, cfg.sessions_per_step):
            surface = "explore" if rng.random() < cfg.explore_share else "home"
            if srng.random() < cfg.tray_share:
                self._tray(int(viewer))
            engagements += self._session(int(viewer), surface, events)
        if events:
            self.stream.append(events, at_ms=now)
            self.report.posts_published += len(published)
        self.report.stories_posted, self.report.stories_deleted = self.stories.posted, self.stories.deleted
        if engagements:
            self.report.engagements_sent += len(engagements)
            self._send(engagements, "/v1/events", "events")
        if self.block_changes:
            self.report.blocks_sent += len(self.block_changes)
            self._send(self.block_changes, "/v1/blocks", "changes")
            self.block_changes = []
        self.regret.keep(now)  # (when something was pushed away)
        self.report.steps += 1

    def _answer(self, route: str, body: dict, latencies: list[float] | None = None) -> dict | None:
        """POST `route`: its JSON answer, or None (counted in `failed_requests`) when the request
        failed or answered other than 200. `latencies`: where its time goes (ms), whatever the status."""
        start = time.perf_counter()
        try:
            r = self.http.post(route, json=body)
        except httpx.HTTPError:
            self.report.failed_requests += 1
            return None
        if latencies is not None:
            latencies.append((time.perf_counter() - start) * 1000)
        if r.status_code != 200:
            self.report.failed_requests += 1
            return None
        return r.json()

    def _tray(self, viewer: int) -> None:
        """The viewer opens the Stories tray: each served story checked against the player's record
        (LiveStories.check), then the ones it watches marked seen."""
        report = self.report
        tray = self._answer("/v1/stories/tray", {"viewer_id": viewer}, report.tray_ms)
        if tray is None:
            return
        report.tray(self.stories.check(tray["items"], tray["served_at_ms"], report.steps))
        watched = self.stories.watch(self.story_rng, tray["items"])[:500]  # (the route's most)
        if watched and self._answer("/v1/stories/seen", {"viewer_id": viewer, "story_ids": watched}) is not None:
            report.stories_watched += len(watched)

    def _session(self, viewer: int, surface: str, events: list[Event]) -> list[dict]:
        report = self.report
        page = self._answer(f"/v1/feed/{surface}", {"viewer_id": viewer, "limit": self.config.page},
                            report.request_ms)
        if page is None:
            return []
        # the session's time: when its page arrived, on the clock the service stamped the page with
        # (the step's start would date the engagements before the impressions they answer)
        now = self.clock.now_ms()
        report.sessions_by_surface[surface] = report.sessions_by_surface.get(surface, 0) + 1
        report.degraded_pages += bool(page["degraded"])
        items = page["items"]
        if not items:
            report.session(viewer, page, 0, 0.0)
            return []
        posts = np.array([i["post_id"] for i in items], np.int64)
        known = posts <= self.posts.n  # a post the truth does not know (a team's) is not judged
        posts, items = posts[known], [i for i, k in zip(items, known, strict=True) if k]
        viewers = np.full(len(posts), viewer, np.int64)
        positions = np.array([i["position"] for i in items])
        pressure = self.regret.pressure(viewer, self.truth.posts.author[posts], now)
        scores = self.truth.scores(viewers, posts, now, regret=pressure)
        # examined first, as sample_outcomes draws it; then where the viewer left, if they did
        would = self.rng.random(len(posts)) < examine_probability(positions)
        examined = leave(self.rng, would, pressure)
        report.left_early += int(examined.sum() < would.sum())
        outcome = sample_outcomes(self.rng, scores, positions, examined=examined)
        seen = examine_probability(positions)
        negative = np.logical_or.reduce([outcome.actions[a] for a in NEGATIVE])
        report.session(viewer, page, int(sum(outcome.actions[a].sum() for a in POSITIVE)),
                       float(sum(TRUE_VALUE_WEIGHTS[a] * (scores.probabilities[a] * seen).sum()
                                 for a in TRUE_VALUE_WEIGHTS)),
                       int(negative.sum()), pushed_shown=int((pressure > 0).sum()),
                       repeat_negatives=int((negative & (pressure > 0)).sum()))
        sent = []
        for k, item in enumerate(items):
            base = {c.VIEWER_ID: viewer, c.POST_ID: item["post_id"], c.AUTHOR_ID: item["author_id"],
                    c.SURFACE: surface, c.REQUEST_ID: page["request_id"]}
            ts = now + 1_000 * (k + 1)  # a second per post scrolled
            for action, logged in LOGGED_AS.items():
                if outcome.actions[action][k]:
                    sent.append({**base, c.EVENT_ID: str(uuid.uuid4()), c.TYPE: logged, c.VALUE: None,
                                 c.TS: iso_ms(ts)})
            for action in NEGATIVE:
                if outcome.actions[action][k]:
                    said = said_as(self.rng, action)
                    sent.append({**base, c.EVENT_ID: str(uuid.uuid4()), c.TYPE: said, c.VALUE: None,
                                 c.TS: iso_ms(ts)})
                    self.regret.push(viewer, item["author_id"], said, ts)
                    self._react(viewer, item, action, ts)
            if outcome.examined[k] and outcome.dwell_ms[k] > DWELL_EMIT_MS:
                sent.append({**base, c.EVENT_ID: str(uuid.uuid4()), c.TYPE: "dwell",
                             c.VALUE: float(outcome.dwell_ms[k]), c.TS: iso_ms(ts)})
            if (outcome.actions["profile_visit"][k] and item["source"] != "in_network"
                    and self.rng.random() < self.config.follow_after_visit):
                events.append(graph_event("follow", viewer, item["author_id"], now))
                report.follows += 1
        return sent

    def _react(self, viewer: int, item: dict, action: str, ts: int) -> None:
        """A report may become a block; a hide a mute (a followed author) or a block (any other),
        with the daily world's chances (data/world/dynamics.py), at once rather than a day later."""
        followed = item["source"] == "in_network"
        if action == "report":
            change = "block" if self.rng.random() < BLOCK_AFTER_REPORT_P else None
        elif followed:
            change = "mute" if self.rng.random() < MUTE_AFTER_HIDE_P else None
        else:
            change = "block" if self.rng.random() < BLOCK_AFTER_HIDE_P else None
        if change:
            self.block_changes.append({"blocker_id": viewer, "blocked_id": item["author_id"], "action": change,
                                       "ts": iso_ms(ts)})

    def _send(self, lines: list[dict], route: str, field: str) -> None:
        batch = 500
        for i in range(0, len(lines), batch):
            chunk = lines[i:i + batch]
            try:
                r = self.http.post(route, json={field: chunk})
            except httpx.HTTPError:
                self.report.failed_requests += 1
                continue
            if r.status_code in (200, 422):
                body = r.json()
                self.report.events_accepted += body["accepted"]
                self.report.events_rejected += len(body["rejected"])
            else:
                self.report.failed_requests += 1

    def run(self, until_ms: int, on_step: Callable[[LivePlayer], None] = lambda player: None,
            wait: Callable[[float], None] = time.sleep) -> LiveReport:
        """Steps until the clock reaches `until_ms`, one every `step_ms` of simulated time (waiting
        for the clock when ahead of it; running late when the service is slower than the clock)."""
        next_ms = self.clock.now_ms()
        while next_ms < until_ms:
            ahead_ms = next_ms - self.clock.now_ms()
            if ahead_ms > 0:
                wait(ahead_ms / self.clock.speed / 1000)
            self.step()
            on_step(self)
            next_ms += self.config.step_ms
        return self.report
