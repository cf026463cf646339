"""The ranker training config (`training/config.toml`): data window, labels, value weights,
LightGBM hyperparameters, promotion rule and simulated A/B settings, typed and validated once.

The value model's heads are not listed here: they come from the log vocabulary
(`data/vocabulary.toml`), and `training.heads.value_heads` pairs each with its weight below."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import AliasPath, Field, field_validator

from data.typed_config import ConfigModel
from features.services import RankingService

DEFAULT_PATH = Path(__file__).with_name("config.toml")
SURFACE_MODELS = {"home": "feed_ranker", "explore": "explore_ranker"}  # registered model names
# Metrics training/evaluate.py reports for every ranker and baseline; realised ones need no truth.
PromotionMetric = Literal["ndcg10_realised", "ndcg50_realised", "map", "ndcg10", "ndcg50"]
PROMOTION_METRICS: tuple[str, ...] = get_args(PromotionMetric)


def _at(section: str, key: str, **constraints: Any) -> Any:
    """A required field read from `key` of the file's [section] (the code uses the flat name)."""
    return Field(validation_alias=AliasPath(section, key), **constraints)


class TrainingConfig(ConfigModel):
    """Every setting is required: the file states each number a model run depends on. Unknown
    sections are refused; keys within [data], [features], [labels], [promotion] and [ab_test] are read by
    name, so a misspelt one shows up as the required key it should have been."""

    train_days: int = _at("data", "train_days", ge=1)
    max_requests_per_day: int = _at("data", "max_requests_per_day", ge=0)
    seed: int = _at("data", "seed")
    feature_service: RankingService = _at("features", "service")
    min_positive_requests: int = _at("data", "min_positive_requests", ge=1)
    grade_thresholds: tuple[float, ...] = _at("labels", "grade_thresholds", min_length=1)
    position_debiased: bool = _at("labels", "position_debiased")
    value_weights: dict[str, float] = Field(min_length=1)
    lambdarank: dict[str, Any]
    heads: dict[str, Any]
    promotion_metric: PromotionMetric = _at("promotion", "metric")
    min_improvement: float = _at("promotion", "min_improvement", ge=0)
    baseline_margin: float = _at("promotion", "baseline_margin", ge=0)
    ab_slots: int = _at("ab_test", "slots")
    ab_treatment_share: float = _at("ab_test", "treatment_share")
    ab_seed: int = _at("ab_test", "seed")
    source: str = str(DEFAULT_PATH)  # the file it was read from

    @field_validator("grade_thresholds")
    @classmethod
    def _positive_increasing(cls, thresholds: tuple[float, ...]) -> tuple[float, ...]:
        if list(thresholds) != sorted(thresholds) or thresholds[0] <= 0:
            raise ValueError("must be positive and increasing")
        return thresholds

    @classmethod
    def load(cls, path: Path | str = DEFAULT_PATH) -> TrainingConfig:
        raw = tomllib.loads(Path(path).read_text())
        return cls.parse({**raw, "source": str(path)}, f"training config {path}")

    def params(self) -> dict[str, Any]:
        """Flat view for MLflow params."""
        flat: dict[str, Any] = {
            "train_days": self.train_days,
            "max_requests_per_day": self.max_requests_per_day,
            "seed": self.seed,
            "feature_service": self.feature_service,
            "grade_thresholds": list(self.grade_thresholds),
            "position_debiased": self.position_debiased,
        }
        flat.update({f"w_{k}": v for k, v in self.value_weights.items()})
        flat.update(promotion_metric=self.promotion_metric, min_improvement=self.min_improvement,
                    baseline_margin=self.baseline_margin)
        flat.update({f"lambdarank.{k}": v for k, v in self.lambdarank.items()})
        flat.update({f"heads.{k}": v for k, v in self.heads.items()})
        return flat
