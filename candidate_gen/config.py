"""Candidate generation's settings, from candidate_gen/config.toml (a copy can be passed in tests).

Sections owned by one component (e.g. [trending], [embeddings]) are read by that component through
`CandidateConfig.section(name)`; the shared ones are typed here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from candidate_gen.keys import Keys
from data.columns import CONTENT_LABELS
from data.days import DAY_MS, DAY_S
from data.typed_config import ConfigError, ConfigModel
from features.celebrity import CelebrityRule

DEFAULT_PATH = Path(__file__).with_name("config.toml")


class FeedConfig(ConfigModel):
    key_prefix: str = "lp:"
    cap: int = 500
    ttl_days: float = 14.0
    max_age_days: float = 7.0
    author_posts_cap: int = 200
    seen_cap: int = 2000
    seen_ttl_days: float = 3.0

    @model_validator(mode="before")
    @classmethod
    def _celebrity_moved(cls, values: Any) -> Any:
        moved = sorted(k for k in values if k.startswith("celebrity_")) if isinstance(values, dict) else []
        if moved:
            raise ConfigError(f"[feed] {moved}: the celebrity rule is shared with the features and lives in "
                              "features/config.toml [celebrity] (followers, percentile, min_followers)")
        return values

    @property
    def ttl_s(self) -> int:
        return int(self.ttl_days * DAY_S)

    @property
    def max_age_ms(self) -> int:
        return int(self.max_age_days * DAY_MS)

    @property
    def seen_ttl_s(self) -> int:
        return int(self.seen_ttl_days * DAY_S)


class FanoutConfig(ConfigModel):
    batch_events: int = 2000
    retry_max_attempts: int = 8
    retry_base_s: float = 0.2
    retry_max_s: float = 5.0


class FatigueConfig(ConfigModel):
    """Feedback fatigue (candidate_gen/fatigue.py): read by the fan-out consumer, the daily asset
    and the ranking service's rescorer."""

    enabled: bool = True
    # engagement types that push a post's author away, and how hard (types the vocabulary lacks
    # never arrive: ingestion and POST /v1/events refuse them)
    weights: dict[str, float] = Field(default_factory=lambda: {
        "see_fewer": 1.0, "not_interested": 0.5, "hide": 1.0, "report": 1.0})
    half_life_hours: float = Field(72.0, gt=0)
    window_days: float = Field(14.0, gt=0)
    strength: float = Field(1.0, ge=0)
    cap: int = Field(200, ge=1)  # push-aways kept per viewer, newest first
    # "posts like this": a push-away's pressure on its post's hashtags, relative to that on its
    # author (0: authors only). Read from the search index's hashtags by the ranking service.
    hashtag_weight: float = Field(0.5, ge=0)

    @property
    def window_ms(self) -> int:
        return int(self.window_days * DAY_MS)


LABELS = CONTENT_LABELS  # content labels (candidate_gen/integrity.py; the post_labels log's enum)
OUTCOMES = ("allow", "interstitial", "downrank", "drop")  # what a label does to a candidate


class IntegrityRules(ConfigModel):
    """The rule set that labels posts and accounts from events and account signals."""

    window_days: float = Field(28.0, gt=0)  # the events and posts the rules look back over
    # a post is borderline when this many distinct viewers reported it ...
    borderline_reporters: int = Field(2, ge=1)
    # ... or when hides + reports per impression reach this rate over at least `min_impressions`
    borderline_negative_rate: float = Field(0.1, gt=0, le=1)
    min_impressions: int = Field(30, ge=1)
    # an account is spam when this many of its posts in the window are borderline ...
    spam_borderline_posts: int = Field(3, ge=1)
    # ... or when it is younger than `spam_new_account_days` and posted at least this many a day
    spam_new_account_days: float = Field(7.0, ge=0)
    spam_posts_per_day: float = Field(20.0, gt=0)
    sensitive_hashtags: list[str] = Field(default_factory=list)  # a post tagged with any is sensitive
    # a post_labels row (a moderation classifier's label) is taken at this score or above; a row
    # without a score (a human reviewer's decision) always is
    min_label_score: float = Field(0.5, ge=0, le=1)

    @property
    def window_ms(self) -> int:
        return int(self.window_days * DAY_MS)


class IntegrityConfig(ConfigModel):
    """Content labels and what each does to a candidate (candidate_gen/integrity.py; the ranking
    service's IntegrityFilterStage): per label, the outcome for a followed author's post and for an
    out-of-network one, the latter as strict or stricter."""

    enabled: bool = True
    rules: IntegrityRules = Field(default_factory=IntegrityRules)
    outcomes: dict[str, tuple[str, str]] = Field(default_factory=lambda: {
        "spam": ("downrank", "drop"), "borderline": ("allow", "downrank"),
        "sensitive": ("interstitial", "interstitial")})
    downrank: float = Field(0.3, gt=0, le=1)  # the share of its score a downranked post keeps

    @model_validator(mode="after")
    def _known(self) -> IntegrityConfig:
        for label, pair in self.outcomes.items():
            if label not in LABELS:
                raise ValueError(f"integrity.outcomes: unknown label {label!r}; labels are {list(LABELS)}")
            for outcome in pair:
                if outcome not in OUTCOMES:
                    raise ValueError(f"integrity.outcomes.{label}: unknown outcome {outcome!r}; "
                                     f"outcomes are {list(OUTCOMES)}")
            followed, out_of_network = (OUTCOMES.index(o) for o in pair)
            if out_of_network < followed:
                raise ValueError(f"integrity.outcomes.{label}: out of network ({pair[1]}) must be as strict "
                                 f"as for a followed author ({pair[0]}) or stricter")
        return self


class SourceConfig(ConfigModel):
    enabled: bool = True
    cap: int = 300
    timeout_ms: float = 20.0


class CandidateConfig(ConfigModel):
    feed: FeedConfig = Field(default_factory=FeedConfig)
    fanout: FanoutConfig = Field(default_factory=FanoutConfig)
    fatigue: FatigueConfig = Field(default_factory=FatigueConfig)
    integrity: IntegrityConfig = Field(default_factory=IntegrityConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)  # the whole file, for `section`
    # Who is pulled at read instead of fanned out: the features' rule (features/config.toml), so
    # the feed's celebrities are the accounts the model knows as `author__is_celebrity`.
    celebrity: CelebrityRule = Field(default_factory=CelebrityRule.load)

    @property
    def keys(self) -> Keys:
        return Keys(self.feed.key_prefix)

    def source(self, name: str) -> SourceConfig:
        return self.sources.get(name, SourceConfig())

    def section(self, name: str) -> dict[str, Any]:
        """A component's own table of the file ({} when absent: the component's defaults)."""
        return dict(self.raw.get(name, {}))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CandidateConfig:
        # The shared tables are typed here; the others are read by their component through `section`.
        shared = {name: raw[name] for name in ("feed", "fanout", "fatigue", "integrity", "sources") if name in raw}
        return cls.parse({**shared, "raw": raw}, "candidate config")

    @classmethod
    def load(cls, path: Path | str | None = None) -> CandidateConfig:
        with open(path or DEFAULT_PATH, "rb") as f:
            return cls.from_dict(tomllib.load(f))

    # The copies below validate the section they change (`changed`); the rest is already valid.

    def with_feed(self, **changes: Any) -> CandidateConfig:
        """A copy with some feed settings changed (tests, benchmarks)."""
        return self.model_copy(update={"feed": self.feed.changed(**changes)})

    def with_timeouts(self, timeout_ms: float) -> CandidateConfig:
        """A copy where every source may take `timeout_ms` (tests on a busy machine assert what a
        source returns, not how fast; timeouts are tested by injecting a stall)."""
        sources = {n: s.changed(timeout_ms=timeout_ms) for n, s in self.sources.items()}
        return self.model_copy(update={"sources": sources})

    def with_caps(self, cap: int, names: Iterable[str]) -> CandidateConfig:
        """A copy where the named sources return at most `cap` candidates (the service's cheap path)."""
        capped = {n: self.source(n).changed(cap=min(cap, self.source(n).cap)) for n in names}
        return self.model_copy(update={"sources": {**self.sources, **capped}})

    def with_celebrity(self, **changes: Any) -> CandidateConfig:
        """A copy with the celebrity rule changed (tests, benchmarks; production edits
        features/config.toml, which the features read too)."""
        return self.model_copy(update={"celebrity": self.celebrity.changed(**changes)})
