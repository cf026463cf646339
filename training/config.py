"""The ranker training config (`training/config.toml`): data window, labels, value weights,
LightGBM hyperparameters, promotion rule and simulated A/B settings, typed and validated once.

The value model's heads are not listed here: they come from the log vocabulary
(`data/vocabulary.toml`), and `training.heads.value_heads` pairs each with its weight below."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("config.toml")
SURFACE_MODELS = {"home": "feed_ranker", "explore": "explore_ranker"}  # registered model names
# Metrics training/evaluate.py reports for every ranker and baseline; realised ones need no truth.
PROMOTION_METRICS = ("ndcg10_realised", "ndcg50_realised", "map", "ndcg10", "ndcg50")


@dataclass(frozen=True)
class TrainingConfig:
    train_days: int
    max_requests_per_day: int
    seed: int
    min_positive_requests: int
    grade_thresholds: tuple[float, ...]
    value_weights: dict[str, float]
    lambdarank: dict[str, Any]
    heads: dict[str, Any]
    promotion_metric: str
    min_improvement: float
    baseline_margin: float
    ab_slots: int
    ab_treatment_share: float
    ab_seed: int
    source: str = field(default=str(DEFAULT_PATH))

    @classmethod
    def load(cls, path: Path | str = DEFAULT_PATH) -> TrainingConfig:
        raw = tomllib.loads(Path(path).read_text())
        try:
            weights = {str(k): float(v) for k, v in raw["value_weights"].items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: [value_weights] must map head names to numbers: {exc}") from exc
        if not weights:
            raise ValueError(f"{path}: [value_weights] is empty")
        thresholds = tuple(float(t) for t in raw["labels"]["grade_thresholds"])
        if list(thresholds) != sorted(thresholds) or thresholds[0] <= 0:
            raise ValueError("labels.grade_thresholds must be positive and increasing")
        data, promo, ab = raw["data"], raw["promotion"], raw["ab_test"]
        if data["train_days"] < 1:
            raise ValueError("data.train_days must be at least 1")
        if int(data["min_positive_requests"]) < 1:
            raise ValueError("data.min_positive_requests must be at least 1")
        if promo["metric"] not in PROMOTION_METRICS:
            raise ValueError(f"promotion.metric must be one of {PROMOTION_METRICS}, got {promo['metric']!r}")
        if float(promo["baseline_margin"]) < 0 or float(promo["min_improvement"]) < 0:
            raise ValueError("promotion.baseline_margin and promotion.min_improvement must be >= 0")
        return cls(
            train_days=int(data["train_days"]),
            max_requests_per_day=int(data["max_requests_per_day"]),
            seed=int(data["seed"]),
            min_positive_requests=int(data["min_positive_requests"]),
            grade_thresholds=thresholds,
            value_weights=weights,
            lambdarank=dict(raw["lambdarank"]),
            heads=dict(raw["heads"]),
            promotion_metric=str(promo["metric"]),
            min_improvement=float(promo["min_improvement"]),
            baseline_margin=float(promo["baseline_margin"]),
            ab_slots=int(ab["slots"]),
            ab_treatment_share=float(ab["treatment_share"]),
            ab_seed=int(ab["seed"]),
            source=str(path),
        )

    def params(self) -> dict[str, Any]:
        """Flat view for MLflow params."""
        flat: dict[str, Any] = {
            "train_days": self.train_days,
            "max_requests_per_day": self.max_requests_per_day,
            "seed": self.seed,
            "grade_thresholds": list(self.grade_thresholds),
        }
        flat.update({f"w_{k}": v for k, v in self.value_weights.items()})
        flat.update(promotion_metric=self.promotion_metric, min_improvement=self.min_improvement,
                    baseline_margin=self.baseline_margin)
        flat.update({f"lambdarank.{k}": v for k, v in self.lambdarank.items()})
        flat.update({f"heads.{k}": v for k, v in self.heads.items()})
        return flat
