"""ModelScorer: the surface's champion scores the hydrated candidates (cascade: its first trees
prune to `keep`, shared between in-network and suggested candidates, the full model ranks those),
within what is left of the budget.

Scoring runs on a small bounded pool (one slot per core) so the request can stop waiting: a request
queues for a slot and for its result only as long as its budget lasts, then it is scored by the
heuristic (reported degraded); a slow call keeps its slot until it ends, so slow models cannot pile
up threads. No champion registered: the heuristic, declared in the response as model_version
"heuristic" with `heuristic_reason` "no_champion" (not a degradation: nothing has passed the promotion
gate yet). No features: the heuristic, degraded. `heuristic_reason` always says why the heuristic scored.
A registry that cannot be read is reported on every response as `degraded: registry` (with what
serves instead), whether the champion kept serving or the heuristic stands in for it. Which model
scores is the request's arm's (serving.arm_models: the champion outside an experiment).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from serving.arm_models import ArmModels
from serving.config import BudgetConfig, CascadeConfig
from serving.heuristic import HeuristicScorer
from serving.pipeline import FeedQuery, FeedState

NO_CANDIDATES = "no_candidates"  # heuristic_reason of an empty page: nothing was left to rank
SLOTS = 2  # concurrent model calls (2 cores); a slot stays taken while a timed-out call finishes


class ModelScorer:
    name = "score"

    def __init__(self, models: ArmModels, heuristic: HeuristicScorer, cascade: CascadeConfig, budget: BudgetConfig):
        self.models, self.heuristic = models, heuristic
        self.cascade, self.reserve_ms = cascade, budget.reserve_ms
        self._pool = ThreadPoolExecutor(max_workers=SLOTS, thread_name_prefix="scorer")
        self._slots = threading.BoundedSemaphore(SLOTS)

    def run(self, query: FeedQuery, state: FeedState) -> None:
        choice = self.models.choose(query.surface, query.arm)
        state.degraded.update(choice.degraded)  # a broken registry, a treatment serving the control's model
        model = choice.model
        if not len(state.candidates):  # an empty page says why nothing was ranked
            state.scores = np.zeros(0)
            state.heuristic_reason = NO_CANDIDATES if model is not None else choice.missing_reason
            return
        if model is None:
            self._heuristic(query, state)
            state.heuristic_reason = choice.missing_reason
            return
        if state.features is None:
            self._heuristic(query, state, "no features")
            return
        x = state.features[:, model.columns(state.feature_names)]
        keep = max(self.cascade.keep, 2 * query.limit) if self.cascade.enabled else None  # one page of each group
        wait_ms = query.deadline.remaining_ms() - self.reserve_ms
        if wait_ms <= 0:
            self._heuristic(query, state, "budget spent")
            return
        if not self._slots.acquire(timeout=wait_ms / 1000):  # queue for a slot within the budget
            self._heuristic(query, state, "model busy")
            return
        in_network = state.candidates.in_network.astype(np.int8)
        future = self._pool.submit(model.score, x, keep, in_network, query.limit)
        future.add_done_callback(lambda _: self._slots.release())
        try:
            left_ms = query.deadline.remaining_ms() - self.reserve_ms
            scores, _ = future.result(timeout=max(left_ms, 0.0) / 1000)
        except FutureTimeout:
            self._heuristic(query, state, "model over budget")
            return
        state.model_features = x
        state.model_scores = np.asarray(scores, dtype=np.float64)
        state.scores = state.model_scores.copy()
        state.model_version, state.scorer, state.heuristic_reason = model.label, model.engine, None

    def _heuristic(self, query: FeedQuery, state: FeedState, why: str | None = None) -> None:
        if why is not None:
            state.degraded[self.name] = why
        state.heuristic_reason = why
        state.scores = self.heuristic.score(state.candidates, query.now_ms, state.features, state.feature_names)
        state.model_scores, state.model_features = None, None
        state.model_version, state.scorer = "heuristic", "heuristic"

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        self._heuristic(query, state, state.degraded.get(self.name, "error"))
