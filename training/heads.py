"""The value model's heads: which heads exist comes from the log vocabulary (`data/vocabulary.toml`,
the `head` each engagement type labels), what each is worth from `[value_weights]` in
training/config.toml. A team's click-only export therefore trains a `click` head, no code changed.

`usable_heads` then keeps, for one training run, the heads that have positives in both the training
and the validation split; the others are dropped with the reason (a binary head cannot learn
without positives, nor early-stop on a split without them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.vocabulary import Vocabulary
from training.config import TrainingConfig


def label_column(head: str) -> str:
    return f"y_{head}"


def value(weights: Mapping[str, float], heads: Mapping[str, np.ndarray]) -> np.ndarray:
    """The value model's score, sum over heads of w * P(head), or the realised value, the same sum
    over the labels. The one definition training, the LightGBM scorer and the compiled scorer share."""
    if not heads:
        raise ValueError("a value needs at least one head")
    terms = [weights[h] * p for h, p in heads.items()]
    return sum(terms[1:], terms[0])


@dataclass(frozen=True)
class ValueHeads:
    weights: dict[str, float]  # head -> business weight, in the vocabulary's order
    negative: frozenset[str]  # heads labelled by negative-role types: their hit makes the grade 0
    vocabulary: Vocabulary

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @property
    def label_columns(self) -> list[str]:
        return [label_column(h) for h in self.weights]


def value_heads(vocabulary: Vocabulary, cfg: TrainingConfig) -> ValueHeads:
    """Every head the vocabulary declares with its configured weight; a clear error when one has
    none, or when a negative head would be rewarded (or a positive one penalised)."""
    if not vocabulary.heads:
        raise ValueError(f"log vocabulary {vocabulary.source}: no engagement type labels a head (all neutral): "
                         "nothing to train a ranker on")
    negative = frozenset(vocabulary.engagement_types[n].head for n in vocabulary.names_with_role("negative"))
    missing = [h for h in vocabulary.heads if h not in cfg.value_weights]
    if missing:
        raise ValueError(
            f"training config {cfg.source}: [value_weights] has no weight for head(s) {missing}, declared by "
            f"the log vocabulary {vocabulary.source}; add e.g. `{missing[0]} = 1.0` under [value_weights]"
        )
    weights = {h: cfg.value_weights[h] for h in vocabulary.heads}
    wrong = [h for h, w in weights.items() if (w > 0 if h in negative else w < 0)]
    if wrong:
        raise ValueError(
            f"training config {cfg.source}: [value_weights] {wrong}: a negative head (hide, report) needs a "
            f"weight <= 0 and any other head a weight >= 0"
        )
    return ValueHeads(weights, negative, vocabulary)


def usable_heads(train: pd.DataFrame, valid: pd.DataFrame,
                 heads: ValueHeads) -> tuple[dict[str, float], dict[str, str]]:
    """(weights of the heads this run can train, {dropped head: why})."""
    kept, dropped = {}, {}
    for head, weight in heads.weights.items():
        col = label_column(head)
        if col not in train.columns or col not in valid.columns:
            dropped[head] = (f"no {col} column in the training set "
                             "(built with another vocabulary: rebuild training/examples)")
            continue
        n_train, n_valid = int(train[col].sum()), int(valid[col].sum())
        if n_train == 0 or n_valid == 0:
            split, rows = ("training", len(train)) if n_train == 0 else ("validation", len(valid))
            dropped[head] = f"no positives in the {split} split ({rows} rows)"
            continue
        kept[head] = weight
    return kept, dropped


def describe(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{h}={w:g}" for h, w in weights.items())
