"""A surface is a declared pipeline; this module runs one.

    sources → dedupe → filters → hydrator → scorer → rescorers → selector → side effects

`RecommendationPipeline` only lists its stages (serving/surfaces.py declares Home, Explore and
Rank); `run` executes them in that order on one `FeedState`, times each, and never lets a stage's
failure escape: the stage is marked degraded and its `fallback` leaves the state usable (no
features → heuristic scores, no scores → chronological order, ...). Privacy is the exception that
fails closed: a filter stage that cannot decide removes what it cannot clear. Side effects run
after the response is built, off the request path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.sources.base import SourceOutcome
from serving.experiment import CONTROL

logger = logging.getLogger(__name__)


class Deadline:
    """The request's total budget, counted from when the request arrived."""

    def __init__(self, budget_ms: float, started: float | None = None):
        self.started = time.perf_counter() if started is None else started
        self.budget_ms = budget_ms

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def remaining_ms(self) -> float:
        return self.budget_ms - self.elapsed_ms()


@dataclass(frozen=True)
class FeedQuery:
    request_id: str
    surface: str  # home | explore (also the surface /v1/rank scores for)
    viewer_id: int
    limit: int
    now_ms: int
    deadline: Deadline
    offset: int = 0  # positions already served on earlier pages
    post_ids: tuple[int, ...] = ()  # /v1/rank: the candidates the caller supplies
    arm: str = CONTROL  # the viewer's arm of the experiment (serving.experiment), assigned once per request
    experiment: str | None = None  # the experiment's name; None: none runs (one arm)


@dataclass
class FeedState:
    """One request's state, written stage by stage (the owner of each field in brackets); arrays
    stay aligned with `candidates` (FeedState.remove cuts them together)."""

    candidates: CandidateBlock = field(default_factory=CandidateBlock.empty)  # [sources; cut by dedupe, filters]
    outcomes: list[SourceOutcome] = field(default_factory=list)  # [sources] one per source
    # [sources] replies of the reads later stages sent with the sources' first round trip, by stage name
    rides: dict[str, Any] = field(default_factory=dict)
    removed: Counter = field(default_factory=Counter)  # [dedupe, filters, sources] reason -> candidates removed
    feature_names: tuple[str, ...] = ()  # [hydrate]
    features: np.ndarray | None = None  # [hydrate] (n, f) float32; None: not hydrated
    model_features: np.ndarray | None = None  # [score] (n, m) what the model scored, its column order
    scores: np.ndarray | None = None  # [score, rescorers] final scores
    model_scores: np.ndarray | None = None  # [score] the model's own (logged); None when no model scored
    model_version: str = "heuristic"  # [score; select when it falls back to chronological]
    scorer: str = "heuristic"  # [score] compiled | lightgbm | heuristic | chronological
    heuristic_reason: str | None = None  # [score] why the heuristic scored (None: a model scored)
    # [select] positions in candidates, in served order
    selected: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # [select] logging P(served post at its position) per selected slot, when the page was served by a
    # randomised policy (the exploration share); None: deterministic, nothing to log
    propensities: np.ndarray | None = None
    degraded: dict[str, str] = field(default_factory=dict)  # [any stage, its own name] stage -> why
    retries: Counter = field(default_factory=Counter)  # [filters] stage -> reads tried again (metrics)
    # [rescorers] (stage, outcome) -> candidates, what a rescorer did (metrics: loupe_rescored_total)
    rescored: Counter = field(default_factory=Counter)
    # [filters] post id -> its content labels, labelled candidates only (None: unread)
    labels: dict[int, frozenset[str]] | None = None
    interstitials: dict[int, str] = field(default_factory=dict)  # [integrity] post id -> what covers it
    stage_ms: dict[str, float] = field(default_factory=dict)  # [the runner]

    def remove(self, keep: np.ndarray, reason: str) -> None:
        """Drop candidates (and their aligned rows) where `keep` is False, counting the reason."""
        keep = np.asarray(keep, dtype=bool)
        dropped = int((~keep).sum())
        if not dropped:
            return
        self.removed[reason] += dropped
        self.candidates = self.candidates.take(keep)
        for name in ("features", "model_features", "scores", "model_scores"):
            block = getattr(self, name)
            if block is not None:
                setattr(self, name, block[keep])


class Stage(Protocol):
    name: str

    def run(self, query: FeedQuery, state: FeedState) -> None: ...

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        """Leave the state usable after `run` raised (the stage is reported degraded)."""
        ...


class SideEffect(Protocol):
    name: str

    def apply(self, query: FeedQuery, state: FeedState) -> None: ...


@dataclass(frozen=True)
class RecommendationPipeline:
    """The declaration: which component does each step, in the fixed order. No logic here."""

    surface: str
    source: Stage
    dedupe: Stage
    filters: Stage
    hydrator: Stage
    scorer: Stage
    rescorers: tuple[Stage, ...]
    selector: Stage
    side_effects: tuple[SideEffect, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in (*self.steps, *self.side_effects)]
        if len(set(names)) != len(names):  # a stage's name keys its timing, its degradation and its metrics
            raise ValueError(f"{self.surface} pipeline: stage names repeat: {names}")

    @property
    def steps(self) -> tuple[Stage, ...]:
        return (self.source, self.dedupe, self.filters, self.hydrator, self.scorer, *self.rescorers, self.selector)


class StageObserver(Protocol):
    def stage_done(self, surface: str, stage: str, elapsed_ms: float, error: BaseException | None) -> None: ...


# Side effects (impression log hand-off, seen-set writes) leave the request thread at once.
_SIDE_EFFECTS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="side-effect")
_PENDING: set[Future] = set()
_PENDING_LOCK = threading.Lock()


def drain_side_effects(timeout_s: float | None = None) -> bool:
    """Wait until every side effect submitted so far has run (shutdown, tests); False on timeout."""
    with _PENDING_LOCK:
        pending = list(_PENDING)
    return not wait(pending, timeout=timeout_s).not_done


def _submit_side_effect(effect: SideEffect, query: FeedQuery, state: FeedState) -> None:
    future = _SIDE_EFFECTS.submit(_side_effect, effect, query, state)
    with _PENDING_LOCK:
        _PENDING.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future) -> None:
    with _PENDING_LOCK:
        _PENDING.discard(future)


def run(pipeline: RecommendationPipeline, query: FeedQuery, observer: StageObserver | None = None) -> FeedState:
    state = FeedState()
    for stage in pipeline.steps:
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            stage.run(query, state)
        except Exception as exc:  # noqa: BLE001 - a stage failure degrades the response, never fails it
            error = exc
            logger.warning("%s/%s failed: %s: %s", pipeline.surface, stage.name, type(exc).__name__, exc)
            state.degraded.setdefault(stage.name, f"error: {type(exc).__name__}")
            stage.fallback(query, state)
        elapsed = (time.perf_counter() - start) * 1000
        state.stage_ms[stage.name] = round(elapsed, 3)
        if observer is not None:
            observer.stage_done(pipeline.surface, stage.name, elapsed, error)
    for effect in pipeline.side_effects:
        _submit_side_effect(effect, query, state)
    return state


def _side_effect(effect: SideEffect, query: FeedQuery, state: FeedState) -> None:
    try:
        effect.apply(query, state)
    except Exception:  # a lost side effect is logged; the response is already out
        logger.exception("side effect %s failed for request %s", effect.name, query.request_id)
