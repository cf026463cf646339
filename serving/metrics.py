"""Prometheus metrics of the ranking service, served on BentoML's /metrics.

prometheus_client directly (bentoml.metrics is deprecated in BentoML 1.4); under `bentoml serve`
the multiprocess directory BentoML sets up collects them from every worker.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram, generate_latest

from serving.pipeline import FeedState

_MS_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05,
               0.075, 0.1, 0.25, 1.0)

STAGE_SECONDS = Histogram("loupe_stage_seconds", "Time per pipeline stage", ["surface", "stage"],
                          buckets=_MS_BUCKETS)
REQUEST_SECONDS = Histogram("loupe_request_seconds", "Time per request, all stages", ["surface"],
                            buckets=_MS_BUCKETS)
CANDIDATES = Counter("loupe_candidates_total", "Candidates returned per source", ["surface", "source"])
SOURCE_STATUS = Counter("loupe_source_outcomes_total", "Source outcomes", ["surface", "source", "status"])
FILTERED = Counter("loupe_filtered_total", "Candidates removed, per reason", ["surface", "reason"])
FALLBACKS = Counter("loupe_fallbacks_total", "Degraded stages (a fallback served)", ["surface", "stage"])
RETRIES = Counter("loupe_retries_total", "Reads tried again within the budget", ["surface", "stage"])
ERRORS = Counter("loupe_errors_total", "Exceptions raised inside a stage", ["surface", "stage"])
SERVED = Counter("loupe_served_total", "Responses, by what ordered them and the experiment's arm",
                 ["surface", "scorer", "arm"])
MODEL_SWAPS = Counter("loupe_model_swaps_total", "Champion swaps", ["surface", "engine"])
RESCORED = Counter("loupe_rescored_total", "Candidates a rescorer acted on (or left, and why)",
                   ["surface", "stage", "outcome"])


class PipelineMetrics:
    """The pipeline runner's observer plus the per-response counts."""

    def stage_done(self, surface: str, stage: str, elapsed_ms: float, error: BaseException | None) -> None:
        STAGE_SECONDS.labels(surface, stage).observe(elapsed_ms / 1000)
        if error is not None:
            ERRORS.labels(surface, stage).inc()

    def response(self, surface: str, state: FeedState, total_ms: float, arm: str) -> None:
        REQUEST_SECONDS.labels(surface).observe(total_ms / 1000)
        for o in state.outcomes:
            SOURCE_STATUS.labels(surface, o.name, o.status).inc()
            if o.candidates:
                CANDIDATES.labels(surface, o.name).inc(len(o.candidates))
        for reason, n in state.removed.items():
            FILTERED.labels(surface, reason).inc(n)
        for stage in state.degraded:
            FALLBACKS.labels(surface, stage).inc()
        for stage, n in state.retries.items():
            RETRIES.labels(surface, stage).inc(n)
        for (stage, outcome), n in state.rescored.items():
            RESCORED.labels(surface, stage, outcome).inc(n)
        SERVED.labels(surface, state.scorer, arm).inc()  # per arm: a split off its share shows here first

    def answered(self, route: str, total_ms: float, degraded, removed=None) -> None:
        """A route outside the feed pipelines (search, the Stories tray): its time, the steps that
        fell back, what it removed per reason (never in its response: it would tell who blocked whom)."""
        REQUEST_SECONDS.labels(route).observe(total_ms / 1000)
        for step in degraded:
            FALLBACKS.labels(route, step).inc()
        for reason, n in (removed or {}).items():
            FILTERED.labels(route, reason).inc(n)

    def swapped(self, surface: str, engine: str) -> None:
        MODEL_SWAPS.labels(surface, engine).inc()

OWN_PREFIX = "loupe_stage_seconds"


def own_metrics() -> str:
    return generate_latest(REGISTRY).decode()
