"""The ranking service's settings, from serving/config.toml (or the file LOUPE_SERVING_CONFIG names).

Typed sections for what the request path reads on every call; `candidates` is merged over
candidate_gen/config.toml so the service can size its sources without a second copy of that file.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from candidate_gen.config import DEFAULT_PATH as CANDIDATES_PATH
from candidate_gen.config import CandidateConfig
from data.typed_config import ConfigError, ConfigModel
from features.services import RankingService
from serving.model_ref import ModelRef

DEFAULT_PATH = Path(__file__).with_name("config.toml")
SURFACES = ("home", "explore")


class BudgetConfig(ConfigModel):
    total_ms: float = 50.0
    reserve_ms: float = 3.0
    redis_timeout_ms: float = 30.0
    # The privacy filters' reads decide whether anything can be served: each attempt may take this
    # long, a failed one is retried once whatever the budget, then again while the budget lasts.
    filters_timeout_ms: float = Field(50.0, gt=0)
    filters_attempts: int = Field(3, ge=1)
    # ... and each retry this long: a reply later than the first attempt's timeout is most often a
    # server starved under load, and a late page beats an empty one (bench-overload at 16 in flight).
    filters_retry_timeout_ms: float = Field(150.0, gt=0)
    # Every source came back empty but some were late: wait for those up to the remaining budget,
    # and at least this long (an empty pool is an empty page).
    late_sources_min_wait_ms: float = 100.0
    # The least budget left at hydration for the model path (hydrate, then score) to be tried; with
    # less the page is ranked by the heuristic at once, instead of spending CPU it cannot finish in.
    model_min_ms: float = 15.0
    # How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). A
    # request's thread back from a Redis reply waits that long behind a busy thread (the impression
    # log's formatting, the next request's parsing) at every round trip.
    gil_switch_ms: float = Field(1.0, gt=0)


class AdmissionConfig(ConfigModel):
    """When a request takes the cheap path (its surface's cheapest sources, newest first, through
    the same privacy filters, reported `degraded: overload`) instead of the full pipeline."""

    max_wait_ms: float = 50.0  # it waited longer than this for a worker thread
    max_in_flight: int = Field(1, ge=1)  # this many requests (either path) already in this worker ...
    queue_ms: float = Field(20.0, ge=0)  # ... for longer than this (0: take the cheap path at once)
    # The cheap path's own budget, counted from when it starts: the request's is spent by then, and
    # without one its late sources and privacy re-reads get no time, so the page comes back empty.
    cheap_budget_ms: float = Field(100.0, gt=0)
    # A request arriving while its worker serves another closes its keep-alive connection after
    # the answer, at most this often per worker (0: never), so connections move to idle workers
    # (serving.connection_rebalance).
    rebalance_every_s: float = Field(1.0, ge=0)
    home_sources: tuple[str, ...] = ("in_network", "popular")
    explore_sources: tuple[str, ...] = ("popular", "trending")
    candidates: int = Field(200, ge=1)  # per source


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


class RenamedKeyError(ConfigError):
    """A serving config names a key by its old name; the message gives the new one."""

    def __init__(self, section: str, renamed: dict[str, str]):
        self.section, self.renamed = section, renamed
        moves = ", ".join(f"{old} is now {new}" for old, new in sorted(renamed.items()))
        super().__init__(f"serving config [{section}]: renamed keys: {moves}")


class HomeConfig(ConfigModel):
    """Home mixes the viewer's network with out-of-network posts: the suggestions of the sources
    Explore also uses."""

    out_of_network_share: float = 0.3
    fill_with_out_of_network: bool = True
    in_network_sources: tuple[str, ...] = ("in_network",)
    out_of_network_sources: tuple[str, ...] = ("trending", "embedding", "social", "popular")
    out_of_network_candidates: int = 500
    out_of_network_scale: float = 0.9

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        renamed = {old: new for old, new in RENAMED["home"].items() if isinstance(values, dict) and old in values}
        if renamed:
            raise RenamedKeyError("home", renamed)
        return values


class ExploreConfig(ConfigModel):
    sources: tuple[str, ...] = ("trending", "embedding", "social", "popular")
    candidates: int = 1000


class RescoringConfig(ConfigModel):
    author_decay: float = 0.5
    author_floor: float = 0.25


class NewAuthorBoostConfig(ConfigModel):
    """Cold start for authors (serving.stages.new_author_boost_rescorer): an author with fewer than
    `threshold` impressions in 28 days (the daily author feature `impressions_28d`) has their posts'
    scores raised by 1 + strength * (1 - impressions / threshold), fading to 1 at the threshold.
    Off until measured: on the shipped worlds 98-99 % of posting authors are below 1,000 impressions,
    so the default threshold mostly lowers the top 1-2 % relative to everyone else."""

    enabled: bool = False
    threshold: float = Field(1000.0, gt=0)  # impressions_28d at and above which nothing is boosted
    strength: float = Field(0.5, ge=0)  # the boost of an author never seen: x (1 + strength)


class ModelConfig(ConfigModel):
    home: str = "feed_ranker"
    explore: str = "explore_ranker"
    alias: str = "champion"
    poll_s: float = 30.0
    engine: Literal["compiled", "lightgbm"] = "compiled"
    threads: int = 1
    ready_requires_compiled: bool = True

    def name(self, surface: str) -> str:
        return getattr(self, surface)

    def ref(self, surface: str) -> ModelRef:
        """What the surface serves outside any experiment (and in its control arm)."""
        return ModelRef(self.name(surface), alias=self.alias)


class CascadeConfig(ConfigModel):
    enabled: bool = True
    first_stage_trees: int = 5
    keep: int = 60


class HydrationConfig(ConfigModel):
    reader: Literal["packed", "feast"] = "packed"
    # the ranking feature service read for every candidate; it must hold every feature of the
    # models served (each later service holds the ones before: features/feature_repo/definitions.py)
    feature_service: RankingService = "feed_ranker_v2"
    # a post's and an author's records, which every viewer's requests read, are kept in the worker
    # for up to this long and not read from Redis again (0: every request reads every record)
    shared_ms: float = Field(1000.0, ge=0)


class HeuristicConfig(ConfigModel):
    recency_half_life_h: float = 12.0
    affinity_weight: float = 1.0
    in_network_bonus: float = 0.5


class ExplorationConfig(ConfigModel):
    share: float = Field(0.05, ge=0.0, le=1.0)  # requests whose page is served in a random order (0 disables)
    seed: int = 0  # 0: fresh entropy per process; else a fixed seed (replays, tests)


class ImpressionsConfig(ConfigModel):
    enabled: bool = True
    instance: str = "serving"
    record_seen: bool = True


# Positions are int32 in the impressions log contract (docs/log_contracts.md): a page must fit.
MAX_POSITION = 2**31 - 1


class ApiConfig(ConfigModel):
    probes_open: bool = True  # /livez /healthz /readyz without the token
    metrics_open: bool = True  # /metrics without the token
    max_body_bytes: int = Field(262_144, ge=1024)  # larger request bodies: 413
    cursor_ttl_s: float = Field(3600.0, gt=0)  # a next_cursor older than this: 400 (start again from the first page)
    # positions a viewer can page to: next_cursor is null from there (100: the largest page)
    max_offset: int = Field(10_000, ge=1, le=MAX_POSITION - 100)


class EventsConfig(ConfigModel):
    max_batch: int = Field(500, ge=1, le=10_000)  # events in one POST /v1/events
    # an event_id accepted within this long is a duplicate at the door; ingestion drops later
    # repeats too (the engagements log's look-back), so this only bounds the markers' memory
    dedupe_ttl_s: float = Field(86_400.0, gt=0)


class SearchConfig(ConfigModel):
    """POST /v1/search (serving/search/; docs/serving.md "Search"): the score is
    text_weight · BM25 (over the best match) + relationship_weight · (follows, else affinity/(1+affinity))
    + recency_weight · 0.5^(age_h / recency_half_life_h)."""

    # the newest matches read from the index (at least overfetch x the page: the filters drop some),
    # scored by BM25 and the rest of the formula; BM25 over every match of a common word costs ~1 µs a match
    window: int = Field(1000, ge=1, le=10_000)
    overfetch: int = Field(5, ge=1, le=50)
    prefix: bool = False  # each word a prefix (food: foodlover, foodgram); several times the index reads
    max_words: int = Field(8, ge=1, le=32)  # words of a query searched for (the rest are ignored)
    budget_ms: float = Field(200.0, gt=0)  # the privacy filters' retries stop when it is spent
    text_weight: float = Field(0.6, ge=0)
    relationship_weight: float = Field(0.25, ge=0)
    recency_weight: float = Field(0.15, ge=0)
    recency_half_life_h: float = Field(72.0, gt=0)


class StoriesConfig(ConfigModel):
    """POST /v1/stories/tray (serving/stories/; docs/serving.md "Stories"): followed accounts with
    unseen live stories, each scored
    closeness_weight · affinity/(1+affinity) + recency_weight · 0.5^(age_h / recency_half_life_h)
    + unseen_weight · min(unseen, 10)/10, age that of its newest unseen story."""

    tray_limit: int = Field(30, ge=1, le=200)  # accounts in a tray
    max_followees: int = Field(5000, ge=1)  # followees whose stories are read (the most affine first)
    max_stories: int = Field(100, ge=1, le=1000)  # newest live stories read per account
    closeness_weight: float = Field(0.5, ge=0)
    recency_weight: float = Field(0.35, ge=0)
    recency_half_life_h: float = Field(6.0, gt=0)
    unseen_weight: float = Field(0.15, ge=0)
    budget_ms: float = Field(200.0, gt=0)  # the privacy filters' read is retried while this lasts


# a model reference in a config file: "@challenger", "feed_ranker:7", "heuristic" (serving.model_ref)
ModelRefText = Annotated[ModelRef, BeforeValidator(ModelRef.coerce)]


class ArmConfig(ConfigModel):
    """What an experiment's treatment arm serves instead of the control's (the rest of this config).
    One key per knob, unset: as the control. A new knob is a field here and the one place that
    reads it (the models: serving.arm_models; fatigue: serving.stages.fatigue_rescorer; new_author_boost:
    serving.stages.new_author_boost_rescorer; integrity: serving.stages.integrity_filter_stage)."""

    home_model: ModelRefText | None = None
    explore_model: ModelRefText | None = None
    fatigue: bool | None = None  # feedback fatigue on or off (candidates' [fatigue]; the fatigue rescorer)
    # the new-author boost on or off ([new_author_boost]; serving.stages.new_author_boost_rescorer)
    new_author_boost: bool | None = None
    integrity: bool | None = None  # content labels' outcomes on or off (candidates' [integrity])

    def model(self, surface: str) -> ModelRef | None:
        return getattr(self, f"{surface}_model")

    def describe(self) -> dict[str, str]:
        """The knobs set, as the file spells them (MLflow params, logs)."""
        return {key: str(value) for key, value in self if value is not None}


class ExperimentConfig(ConfigModel):
    """A live A/B (docs/serving.md "Experiments"): viewers are routed by a hash of (salt, viewer id)
    to the control (this config as it is) or the treatment (`treatment` changes it)."""

    enabled: bool = False
    name: str = Field("ab", pattern=r"^[A-Za-z0-9_.\-]+$")  # on every response and served impression
    salt: str = ""  # "": the name. A new salt draws a new, independent split of the viewers
    # viewers in the treatment; raising it keeps every treated viewer treated (one hash, one cut)
    treatment_share: float = Field(0.5, ge=0.0, le=1.0)
    treatment: ArmConfig = Field(default_factory=ArmConfig)

    @property
    def hash_salt(self) -> str:
        return self.salt or self.name


class ServingConfig(ConfigModel):
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    home: HomeConfig = Field(default_factory=HomeConfig)
    explore: ExploreConfig = Field(default_factory=ExploreConfig)
    rescoring: RescoringConfig = Field(default_factory=RescoringConfig)
    new_author_boost: NewAuthorBoostConfig = Field(default_factory=NewAuthorBoostConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    cascade: CascadeConfig = Field(default_factory=CascadeConfig)
    hydration: HydrationConfig = Field(default_factory=HydrationConfig)
    heuristic: HeuristicConfig = Field(default_factory=HeuristicConfig)
    impressions: ImpressionsConfig = Field(default_factory=ImpressionsConfig)
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    stories: StoriesConfig = Field(default_factory=StoriesConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    candidates: CandidateConfig = Field(default_factory=CandidateConfig.load)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], candidates_path: Path | str | None = None) -> ServingConfig:
        with open(candidates_path or CANDIDATES_PATH, "rb") as f:
            base = tomllib.load(f)
        candidates = CandidateConfig.from_dict(_merged(base, raw.get("candidates", {})))
        return cls.parse({**raw, "candidates": candidates}, "serving config")

    @classmethod
    def load(cls, path: Path | str | None = None) -> ServingConfig:
        with open(path or DEFAULT_PATH, "rb") as f:
            return cls.from_dict(tomllib.load(f))

    def with_(self, section: str, **changes: Any) -> ServingConfig:
        """A copy with some settings of one section changed (tests, benchmarks), that section
        validated (the others already are)."""
        return self.model_copy(update={section: getattr(self, section).changed(**changes)})


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out
