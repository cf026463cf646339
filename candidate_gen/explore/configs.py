"""The Explore sections of candidate_gen/config.toml, one frozen config per source.

Each is read by its builder (write side) and by its request-path source (read side), so this module
holds nothing but the configs: a source does not load pandas or faiss to know its knobs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from candidate_gen.config import CandidateConfig
from data.days import DAY_MS, DAY_S, HOUR_MS, HOUR_S
from data.typed_config import ConfigModel
from features.tables import DECAY_WEIGHTS


class SectionConfig(ConfigModel):
    """A config read from one table of candidate_gen/config.toml (`table`)."""

    table: ClassVar[str]

    @field_validator("*", mode="before")
    @classmethod
    def _over_default_entries(cls, value: Any, info: ValidationInfo) -> Any:
        """A partial table (e.g. [trending.weights] naming one type) overrides those entries of the
        default and keeps the others."""
        if isinstance(value, dict):
            default = cls.model_fields[info.field_name].get_default(call_default_factory=True)
            if isinstance(default, dict):
                return {**default, **value}
        return value

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> Self:
        return cls.parse(section, f"candidate config [{cls.table}]")


class TrendingConfig(SectionConfig):
    """[trending]: the trending, per-hashtag trending and viewer-tag sets (explore.trending)."""

    table: ClassVar[str] = "trending"

    windows_hours: tuple[float, ...] = (1.0, 6.0, 24.0)
    window_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    smoothing_events: float = 5.0
    min_events: int = 3
    weights: dict[str, float] = Field(default_factory=lambda: dict(DECAY_WEIGHTS))
    top_k: int = 500  # global trending set size
    tag_top_k: int = 200  # per-hashtag set size
    min_tag_posts: int = 10  # a tag gets a set when at least this many of its posts trend
    ttl_hours: float = 48.0
    viewer_tags_days: float = 28.0
    viewer_tags_n: int = 10  # tags kept per viewer
    # Read side (TrendingSource): the viewer's top tags it reads, posts per tag, and how much the
    # viewer's strongest tag multiplies a post's velocity (1 + tag_boost * weight / top weight).
    source_tags: int = 5
    source_per_tag: int = 100
    tag_boost: float = 1.0
    live: bool = True  # read the stream's sets (features/streaming/spec.py) while they hold any post
    live_prefix: str = "loupe:rt"  # ... under the stream feature worker's key prefix

    @model_validator(mode="after")
    def _one_weight_per_window(self) -> Self:
        if len(self.windows_hours) != len(self.window_weights) or not self.windows_hours:
            raise ValueError("windows_hours and window_weights must be non-empty and the same length")
        return self

    @property
    def ttl_s(self) -> int:
        return int(self.ttl_hours * HOUR_S)

    @property
    def longest_ms(self) -> int:
        return int(max(self.windows_hours) * HOUR_MS)


class PopularConfig(SectionConfig):
    """[popular]: the cold-start fallback, built with trending."""

    table: ClassVar[str] = "popular"

    window_hours: float = 48.0
    top_k: int = 1000
    ttl_hours: float = 48.0
    # PopularSource keeps the (global) set in process this long, in request time; 0: always read.
    cache_ms: int = 30_000

    @property
    def ttl_s(self) -> int:
        return int(self.ttl_hours * HOUR_S)


class SocialConfig(SectionConfig):
    """[social]: users' engaged posts and viewers' top-affinity accounts (explore.social)."""

    table: ClassVar[str] = "social"

    engaged_days: float = 3.0  # how long an engagement stays a social signal
    engaged_cap: int = 50  # newest engaged posts kept per user
    affinity_n: int = 20  # top-affinity authors kept per viewer
    affinity_ttl_days: float = 2.0  # a viewer missing from later snapshots loses the set by then
    # Read side (SocialSource): followees sampled (top-affinity ones first), top-affinity accounts
    # read, and engaged posts read per account.
    followee_sample: int = 50
    affinity_accounts: int = 20
    per_account: int = 20

    @property
    def engaged_ms(self) -> int:
        return int(self.engaged_days * DAY_MS)

    @property
    def engaged_ttl_s(self) -> int:
        # An idle user's set holds nothing usable once its newest entry is older than the window.
        return int(self.engaged_days * DAY_S)

    @property
    def affinity_ttl_s(self) -> int:
        return int(self.affinity_ttl_days * DAY_S)


# Per-type weight of an engagement in a (viewer, author) pair's confidence. A dwell row is logged for
# any examined post (> 2 s), so a short one counts little and a long one (>= LONG_DWELL_MS) half a
# like; hides and reports subtract, and a pair whose net weight is not positive is left out.
EMBEDDING_WEIGHTS = {
    "like": 1.0, "comment": 2.0, "share": 2.0, "save": 1.5, "profile_visit": 1.0,
    "long_dwell": 0.5, "dwell": 0.1, "hide": -1.0, "report": -3.0,
}


class EmbeddingConfig(SectionConfig):
    """[embeddings]: training, index and source knobs (explore.embeddings)."""

    table: ClassVar[str] = "embeddings"

    window_days: int = 28  # engagements landed in the last N days, up to and including `day`
    half_life_days: float = 14.0  # older engagements count less (0: no decay)
    weights: dict[str, float] = Field(default_factory=lambda: dict(EMBEDDING_WEIGHTS))
    scaling: Literal["bm25", "log", "none"] = "bm25"  # confidence from the weighted pair matrix
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    min_author_viewers: int = 2  # an author engaged by fewer distinct viewers is not indexed
    factors: int = 32  # 16-128 tried: 64+ recall less; 16 a little more but is closer to popularity
    iterations: int = 15
    regularization: float = 0.05
    alpha: float = 20.0  # confidence = alpha * scaled weight (1, 5, 20, 50 tried)
    normalize_authors: bool = False  # True: cosine (see explore.embeddings for why not)
    seed: int = 7
    num_threads: int = 2
    index: Literal["flat", "hnsw"] = "flat"  # see docs in `build_author_index`
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    # --- the source ---
    nearest_authors: int = 100  # M: not-followed authors taken per request
    posts_per_author: int = 3  # recent posts read from each of them
    viewer_ttl_days: float = 3.0  # a published viewer vector outlives a few missed daily runs
    publish_batch: int = 2000  # SETs per pipeline round trip

    @property
    def viewer_ttl_s(self) -> int:
        return int(self.viewer_ttl_days * DAY_S)

    @classmethod
    def of(cls, cfg: CandidateConfig) -> EmbeddingConfig:
        return cls.from_section(cfg.section(cls.table))
