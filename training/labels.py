"""Labels of an impression from the engagements attributed to it (same request_id and post_id):
one 0/1 column per value-model head (the heads the log vocabulary declares), the realised value,
and a graded relevance for LambdaRank. Which head an engagement labels is the vocabulary's
`head_of(type, value)`: unknown and neutral types label nothing, a dwell only when long."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data import columns as c
from training.config import TrainingConfig
from training.heads import ValueHeads, label_column, value

KEY = [c.REQUEST_ID, c.POST_ID]


def engagement_heads(engagements: pd.DataFrame, heads: ValueHeads) -> pd.Series:
    """The head each engagement labels (None: none), by the vocabulary's `head_of`, per type once."""
    vocab = heads.vocabulary
    types = engagements[c.TYPE].astype(object)
    long_dwell = pd.to_numeric(engagements[c.VALUE], errors="coerce").fillna(0).to_numpy() >= vocab.long_dwell_ms
    kinds = types.dropna().unique()
    short = types.map({t: vocab.head_of(t, None) for t in kinds})
    long = types.map({t: vocab.head_of(t, float(vocab.long_dwell_ms)) for t in kinds})
    return long.where(long_dwell, short)


def attach_labels(impressions: pd.DataFrame, engagements: pd.DataFrame, heads: ValueHeads,
                  cfg: TrainingConfig) -> pd.DataFrame:
    """impressions + y_<head> (0/1) for every head, `value` and `grade`. Engagements without a
    request_id, or for an impression not in `impressions`, do not label anything."""
    eng = engagements.dropna(subset=[c.REQUEST_ID])
    hits = pd.DataFrame({c.REQUEST_ID: eng[c.REQUEST_ID], c.POST_ID: eng[c.POST_ID],
                         "head": engagement_heads(eng, heads)}).dropna()
    hits = hits[hits["head"].isin(heads.names)]
    out = impressions.copy()
    if len(hits):
        wide = pd.crosstab([hits[c.REQUEST_ID], hits[c.POST_ID]], hits["head"]).clip(upper=1)
        wide = wide.reindex(columns=list(heads.names), fill_value=0).add_prefix("y_").reset_index()
        out = out.merge(wide, on=KEY, how="left")
    for col in heads.label_columns:
        out[col] = out[col].fillna(0).astype(np.int8) if col in out else np.int8(0)
    out["value"] = realised_value(out, heads)
    out["grade"] = graded_relevance(out, heads, cfg)
    return out


def realised_value(frame: pd.DataFrame, heads: ValueHeads) -> np.ndarray:
    return value(heads.weights, {h: frame[label_column(h)].to_numpy(np.float64) for h in heads.weights})


def graded_relevance(frame: pd.DataFrame, heads: ValueHeads, cfg: TrainingConfig) -> np.ndarray:
    """0..len(thresholds): how many thresholds the positive value reaches; a hit on any negative
    head (hide, report) makes it 0."""
    positive = np.zeros(len(frame))
    negative = np.zeros(len(frame), dtype=bool)
    for h, w in heads.weights.items():
        y = frame[label_column(h)].to_numpy()
        if h in heads.negative:
            negative |= y > 0
        else:
            positive += max(w, 0.0) * y
    grade = np.searchsorted(np.asarray(cfg.grade_thresholds), positive, side="right")
    return np.where(negative, 0, grade).astype(np.int32)
