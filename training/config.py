"""The ranker training config (`training/config.toml`): data window, labels, value weights,
LightGBM hyperparameters, promotion rule and simulated A/B settings, typed and validated once."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("config.toml")
# Per-action heads of the value model; "negative" is hide or report.
HEADS = ("like", "comment", "share", "save", "profile_visit", "long_dwell", "negative")
SURFACE_MODELS = {"home": "feed_ranker", "explore": "explore_ranker"}  # registered model names


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
    ab_slots: int
    ab_treatment_share: float
    ab_seed: int
    source: str = field(default=str(DEFAULT_PATH))

    @classmethod
    def load(cls, path: Path | str = DEFAULT_PATH) -> TrainingConfig:
        raw = tomllib.loads(Path(path).read_text())
        weights = {k: float(v) for k, v in raw["value_weights"].items()}
        unknown = set(weights) - set(HEADS)
        if unknown or set(HEADS) - set(weights):
            raise ValueError(f"value_weights must name exactly the heads {HEADS}; got {sorted(weights)}")
        thresholds = tuple(float(t) for t in raw["labels"]["grade_thresholds"])
        if list(thresholds) != sorted(thresholds) or thresholds[0] <= 0:
            raise ValueError("labels.grade_thresholds must be positive and increasing")
        data, promo, ab = raw["data"], raw["promotion"], raw["ab_test"]
        if data["train_days"] < 1:
            raise ValueError("data.train_days must be at least 1")
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
        flat.update({f"lambdarank.{k}": v for k, v in self.lambdarank.items()})
        flat.update({f"heads.{k}": v for k, v in self.heads.items()})
        return flat
