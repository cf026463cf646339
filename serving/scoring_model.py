"""A champion ready to score: the full ranker and its first-stage cut, on one engine.

The cascade's first stage is the champion's own first trees (`first_stage_trees` per booster):
gradient boosting front-loads the signal, so the prefix orders candidates nearly as the full model
does at a fraction of the cost, needs no second model to train, version or keep in step, and is
always the champion's. The full model then scores only the `keep` best of the first stage.

Engines: `lightgbm` (the boosters' own predict, prefix by `num_iteration`) is available at once;
`compiled` (treelite + tl2cgen, serving.compiled_ranker) replaces it when its libraries are built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from serving.compiled_ranker import CompiledRanker
from training.heads import value
from training.models import LAMBDARANK, Ranker

Predict = Callable[[np.ndarray], np.ndarray]


def _combine(ranker: Ranker, heads: Callable[[np.ndarray], dict[str, np.ndarray]]) -> Predict:
    """The ranker's score from its boosters' outputs: LambdaRank's own, or sum_a w_a * P(a)."""
    if ranker.kind == LAMBDARANK:
        return lambda x: heads(x)[LAMBDARANK]
    weights = dict(ranker.weights)
    return lambda x: value(weights, heads(x))


def prefix_ranker(ranker: Ranker, trees: int) -> Ranker:
    """The same ranker cut to its first `trees` iterations per booster."""
    boosters = {
        name: lgb.Booster(model_str=b.model_to_string(num_iteration=min(trees, b.num_trees())))
        for name, b in ranker.boosters.items()
    }
    return Ranker(ranker.kind, ranker.feature_names, boosters, ranker.weights, {})


def lightgbm_predict(ranker: Ranker, threads: int, iterations: int | None = None) -> Predict:
    def heads(x: np.ndarray) -> dict[str, np.ndarray]:
        return {n: b.predict(x, num_iteration=iterations, num_threads=threads)
                for n, b in ranker.boosters.items()}

    return _combine(ranker, heads)


def compiled_predict(compiled: CompiledRanker) -> Predict:
    return compiled.predict


@dataclass(frozen=True)
class ScoringModel:
    name: str  # registered model
    version: str
    engine: str  # "lightgbm" | "compiled"
    feature_names: tuple[str, ...]
    full: Predict
    first_stage: Predict | None  # None: no cascade
    _columns: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"

    def columns(self, hydrated: Sequence[str]) -> np.ndarray:
        """Positions of this model's features in a hydrated block's columns (cached per layout)."""
        key = tuple(hydrated)
        found = self._columns.get(key)
        if found is None:
            where = {n: i for i, n in enumerate(key)}
            missing = [f for f in self.feature_names if f not in where]
            if missing:
                raise KeyError(f"{self.label}: features not hydrated: {missing[:5]}")
            found = self._columns[key] = np.array([where[f] for f in self.feature_names])
        return found

    def score(self, x: np.ndarray, keep: int | None, groups: np.ndarray | None = None,
              min_per_group: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Scores of the rows of `x` (model's column order) and which rows the full model scored.

        With a first stage and more than `keep` rows: the first stage scores all, the full model
        the best `keep`, shared among `groups` (e.g. in-network / suggested) in proportion to their
        size and at least `min_per_group` each, so a page mixing groups is always made of fully
        scored rows. The others keep their first-stage score, placed below every full score.
        """
        n = len(x)
        if self.first_stage is None or keep is None or n <= keep:
            return self.full(x), np.arange(n)
        first = self.first_stage(x)
        groups = np.zeros(n, dtype=np.int8) if groups is None else groups
        top = []
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            k = min(len(rows), max(min_per_group, round(keep * len(rows) / n)))
            top.append(rows[np.argpartition(-first[rows], k - 1)[:k]] if k < len(rows) else rows)
        top = np.sort(np.concatenate(top))
        full = self.full(x[top])
        scores = first - first.max() + full.min() - 1.0  # pruned rows rank after the kept ones
        scores[top] = full
        return scores, top


def lightgbm_model(name: str, version: str, ranker: Ranker, threads: int,
                   first_stage_trees: int | None) -> ScoringModel:
    first = lightgbm_predict(ranker, threads, first_stage_trees) if first_stage_trees else None
    return ScoringModel(name, version, "lightgbm", tuple(ranker.feature_names),
                        lightgbm_predict(ranker, threads), first)


def compiled_model(name: str, version: str, ranker: Ranker, cache_dir, threads: int,
                   first_stage_trees: int | None) -> ScoringModel:
    full = CompiledRanker.compile(ranker, cache_dir, threads)
    first = None
    if first_stage_trees:
        first = compiled_predict(CompiledRanker.compile(prefix_ranker(ranker, first_stage_trees), cache_dir, threads))
    return ScoringModel(name, version, "compiled", tuple(ranker.feature_names), compiled_predict(full), first)
