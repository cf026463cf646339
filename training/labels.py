"""Labels of an impression from the engagements attributed to it (same request_id and post_id):
one 0/1 column per value-model head, the realised value, and a graded relevance for LambdaRank."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data import columns as c
from training.config import HEADS, TrainingConfig

# Engagement type -> head. Dwell counts only when long; hide and report are one negative head.
TYPE_TO_HEAD = {
    "like": "like", "comment": "comment", "share": "share", "save": "save",
    "profile_visit": "profile_visit", "hide": "negative", "report": "negative",
}
KEY = [c.REQUEST_ID, c.POST_ID]


def label_column(head: str) -> str:
    return f"y_{head}"


LABEL_COLUMNS = [label_column(h) for h in HEADS]


def attach_labels(impressions: pd.DataFrame, engagements: pd.DataFrame, cfg: TrainingConfig) -> pd.DataFrame:
    """impressions + y_<head> (0/1), `value` and `grade`. Engagements without a request_id, or
    for an impression not in `impressions`, do not label anything."""
    eng = engagements.dropna(subset=[c.REQUEST_ID])
    long_dwell = (eng[c.TYPE] == "dwell") & (eng[c.VALUE].fillna(0) >= c.LONG_DWELL_MS)
    head = eng[c.TYPE].map(TYPE_TO_HEAD).where(~long_dwell, "long_dwell")
    hits = pd.DataFrame({c.REQUEST_ID: eng[c.REQUEST_ID], c.POST_ID: eng[c.POST_ID], "head": head}).dropna()
    wide = (
        pd.crosstab([hits[c.REQUEST_ID], hits[c.POST_ID]], hits["head"]).clip(upper=1)
        if len(hits) else pd.DataFrame()
    )
    wide = wide.reindex(columns=list(HEADS), fill_value=0).add_prefix("y_").reset_index() if len(hits) else None
    out = impressions.copy()
    if wide is not None:
        out = out.merge(wide, on=KEY, how="left")
    for col in LABEL_COLUMNS:
        out[col] = out[col].fillna(0).astype(np.int8) if col in out else np.int8(0)
    out["value"] = realised_value(out, cfg)
    out["grade"] = graded_relevance(out, cfg)
    return out


def realised_value(frame: pd.DataFrame, cfg: TrainingConfig) -> np.ndarray:
    return sum(cfg.value_weights[h] * frame[label_column(h)].to_numpy(np.float64) for h in HEADS)


def graded_relevance(frame: pd.DataFrame, cfg: TrainingConfig) -> np.ndarray:
    """0..len(thresholds): how many thresholds the positive value reaches; negatives are 0."""
    positive = sum(
        max(cfg.value_weights[h], 0.0) * frame[label_column(h)].to_numpy(np.float64) for h in HEADS
    )
    grade = np.searchsorted(np.asarray(cfg.grade_thresholds), positive, side="right")
    return np.where(frame[label_column("negative")].to_numpy() > 0, 0, grade).astype(np.int32)
