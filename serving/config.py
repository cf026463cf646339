"""The ranking service's settings, from serving/config.toml (or the file LOUPE_SERVING_CONFIG names).

Typed sections for what the request path reads on every call; `candidates` is merged over
candidate_gen/config.toml so the service can size its sources without a second copy of that file.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from candidate_gen.config import DEFAULT_PATH as CANDIDATES_PATH
from candidate_gen.config import CandidateConfig

DEFAULT_PATH = Path(__file__).with_name("config.toml")
SURFACES = ("home", "explore")


@dataclass(frozen=True)
class BudgetConfig:
    total_ms: float = 50.0
    reserve_ms: float = 3.0
    redis_timeout_ms: float = 30.0
    # The privacy filters' reads decide whether anything can be served: each attempt may take this
    # long, a failed one is retried once whatever the budget, then again while the budget lasts.
    filters_timeout_ms: float = 50.0
    filters_attempts: int = 3
    # ... and each retry this long: a reply later than the first attempt's timeout is most often a
    # server starved under load, and a late page beats an empty one (bench-overload at 16 in flight).
    filters_retry_timeout_ms: float = 150.0
    # Every source came back empty but some were late: wait for those up to the remaining budget,
    # and at least this long (an empty pool is an empty page).
    late_sources_min_wait_ms: float = 100.0
    # The least budget left at hydration for the model path (hydrate, then score) to be tried; with
    # less the page is ranked by the heuristic at once, instead of spending CPU it cannot finish in.
    model_min_ms: float = 15.0


@dataclass(frozen=True)
class AdmissionConfig:
    """When a request takes the cheap path (its surface's cheapest sources, newest first, through
    the same privacy filters, reported `degraded: overload`) instead of the full pipeline."""

    max_wait_ms: float = 50.0  # it waited longer than this for a worker thread
    max_in_flight: int = 1  # this many requests (either path) already in this worker
    # The cheap path's own budget, counted from when it starts: the request's is spent by then, and
    # without one its late sources and privacy re-reads get no time, so the page comes back empty.
    cheap_budget_ms: float = 100.0
    home_sources: tuple[str, ...] = ("in_network", "popular")
    explore_sources: tuple[str, ...] = ("popular", "trending")
    candidates: int = 200  # per source


@dataclass(frozen=True)
class HomeConfig:
    """Home mixes the viewer's network with out-of-network posts: the suggestions of the sources
    Explore also uses."""

    out_of_network_share: float = 0.3
    fill_with_out_of_network: bool = True
    in_network_sources: tuple[str, ...] = ("in_network",)
    out_of_network_sources: tuple[str, ...] = ("trending", "embedding", "social", "popular")
    out_of_network_candidates: int = 500
    out_of_network_scale: float = 0.9


@dataclass(frozen=True)
class ExploreConfig:
    sources: tuple[str, ...] = ("trending", "embedding", "social", "popular")
    candidates: int = 1000


@dataclass(frozen=True)
class RescoringConfig:
    author_decay: float = 0.5
    author_floor: float = 0.25


@dataclass(frozen=True)
class ModelConfig:
    home: str = "feed_ranker"
    explore: str = "explore_ranker"
    alias: str = "champion"
    poll_s: float = 30.0
    engine: str = "compiled"
    threads: int = 1
    ready_requires_compiled: bool = True

    def name(self, surface: str) -> str:
        return getattr(self, surface)


@dataclass(frozen=True)
class CascadeConfig:
    enabled: bool = True
    first_stage_trees: int = 5
    keep: int = 60


@dataclass(frozen=True)
class HydrationConfig:
    reader: str = "packed"


@dataclass(frozen=True)
class HeuristicConfig:
    recency_half_life_h: float = 12.0
    affinity_weight: float = 1.0
    in_network_bonus: float = 0.5


@dataclass(frozen=True)
class ExplorationConfig:
    share: float = 0.05  # requests whose page is served in a random order (0 disables)
    seed: int = 0  # 0: fresh entropy per process; else a fixed seed (replays, tests)


@dataclass(frozen=True)
class ImpressionsConfig:
    enabled: bool = True
    instance: str = "serving"
    record_seen: bool = True


# Positions are int32 in the impressions log contract (docs/log_contracts.md): a page must fit.
MAX_POSITION = 2**31 - 1


@dataclass(frozen=True)
class ApiConfig:
    probes_open: bool = True  # /livez /healthz /readyz without the token
    metrics_open: bool = True  # /metrics without the token
    max_body_bytes: int = 262_144  # larger request bodies: 413
    cursor_ttl_s: float = 3600.0  # a next_cursor older than this: 400 (start again from the first page)
    max_offset: int = 10_000  # positions a viewer can page to: next_cursor is null from there


# Keys renamed since a config could name them: [section] -> {old: new}. An old key is refused by its
# new name rather than as merely unknown, so a deployment's own copy says what to change.
RENAMED = {
    "home": {
        "explore_share": "out_of_network_share",
        "fill_with_explore": "fill_with_out_of_network",
        "explore_sources": "out_of_network_sources",
        "explore_candidates": "out_of_network_candidates",
    },
}


class RenamedKeyError(ValueError):
    """A serving config names a key by its old name; the message gives the new one."""

    def __init__(self, section: str, renamed: dict[str, str]):
        self.section, self.renamed = section, renamed
        moves = ", ".join(f"{old} is now {new}" for old, new in sorted(renamed.items()))
        super().__init__(f"serving config [{section}]: renamed keys: {moves}")


_SECTIONS = {
    "budget": BudgetConfig, "home": HomeConfig, "explore": ExploreConfig,
    "rescoring": RescoringConfig, "model": ModelConfig, "cascade": CascadeConfig,
    "hydration": HydrationConfig, "heuristic": HeuristicConfig, "impressions": ImpressionsConfig,
    "exploration": ExplorationConfig, "api": ApiConfig, "admission": AdmissionConfig,
}


@dataclass(frozen=True)
class ServingConfig:
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    home: HomeConfig = field(default_factory=HomeConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    rescoring: RescoringConfig = field(default_factory=RescoringConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    hydration: HydrationConfig = field(default_factory=HydrationConfig)
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    impressions: ImpressionsConfig = field(default_factory=ImpressionsConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    candidates: CandidateConfig = field(default_factory=lambda: CandidateConfig.load())

    @classmethod
    def from_dict(cls, raw: dict[str, Any], candidates_path: Path | str | None = None) -> ServingConfig:
        unknown = set(raw) - set(_SECTIONS) - {"candidates"}
        if unknown:
            raise ValueError(f"serving config: unknown sections {sorted(unknown)}")
        sections = {name: _typed(kind, raw.get(name, {}), name) for name, kind in _SECTIONS.items()}
        if sections["hydration"].reader not in ("packed", "feast"):
            raise ValueError(f"hydration.reader must be packed or feast, got {sections['hydration'].reader!r}")
        if sections["model"].engine not in ("compiled", "lightgbm"):
            raise ValueError(f"model.engine must be compiled or lightgbm, got {sections['model'].engine!r}")
        if not 0.0 <= sections["exploration"].share <= 1.0:
            raise ValueError(f"exploration.share must be in [0, 1], got {sections['exploration'].share}")
        api = sections["api"]
        if not 0 < api.max_offset <= MAX_POSITION - 100:  # 100: the largest page
            raise ValueError(f"api.max_offset must be in 1..{MAX_POSITION - 100}, got {api.max_offset}")
        if api.max_body_bytes < 1024 or api.cursor_ttl_s <= 0:
            raise ValueError("api.max_body_bytes must be at least 1024 and api.cursor_ttl_s positive")
        budget, admission = sections["budget"], sections["admission"]
        if budget.filters_attempts < 1 or min(budget.filters_timeout_ms, budget.filters_retry_timeout_ms) <= 0:
            raise ValueError("budget.filters_attempts must be at least 1 and budget.filters_timeout_ms and "
                             "filters_retry_timeout_ms positive")
        if admission.max_in_flight < 1 or admission.candidates < 1:
            raise ValueError("admission.max_in_flight and admission.candidates must be at least 1")
        if admission.cheap_budget_ms <= 0:
            raise ValueError("admission.cheap_budget_ms must be positive")
        with open(candidates_path or CANDIDATES_PATH, "rb") as f:
            base = tomllib.load(f)
        candidates = CandidateConfig.from_dict(_merged(base, raw.get("candidates", {})))
        return cls(**sections, candidates=candidates)

    @classmethod
    def load(cls, path: Path | str | None = None) -> ServingConfig:
        with open(path or DEFAULT_PATH, "rb") as f:
            return cls.from_dict(tomllib.load(f))

    def with_(self, section: str, **changes: Any) -> ServingConfig:
        """A copy with some settings of one section changed (tests, benchmarks)."""
        return replace(self, **{section: replace(getattr(self, section), **changes)})


def _typed(kind: type, values: dict[str, Any], name: str) -> Any:
    renamed = {k: RENAMED[name][k] for k in values if k in RENAMED.get(name, {})}
    if renamed:
        raise RenamedKeyError(name, renamed)
    known = {f.name for f in fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"serving config [{name}]: unknown keys {sorted(unknown)}")
    # lists in TOML, tuples here: the config is frozen and hashable
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out
