"""How good the integrity labels are, against a simulated world's truth: the precision and recall of
the posts labelled borderline (by the rules and the moderation classifier's post_labels together,
by the classifier alone, by the rules alone) against the posts the world made truly borderline
(truth/post_integrity.parquet; data/world/simulate.py step 6).

The truth's borderline posts counted are those created within the rules' window up to the end of
the day (what the labels could know of); a labelled post outside it still counts against precision.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from candidate_gen.config import IntegrityRules
from candidate_gen.explore.lake_reads import lookback_first_day
from candidate_gen.integrity import Labels, label, labels_from_lake, read_post_labels
from candidate_gen.lake_reader import to_ms
from data import columns as c
from data.days import day_end_ms

TRUTH_FILE = "post_integrity.parquet"


def truly_borderline(truth_dir: Path, first_ms: int, last_ms: int) -> set[int]:
    """The truth's borderline posts created within [first_ms, last_ms]."""
    flags = pq.read_table(Path(truth_dir) / TRUTH_FILE, columns=[c.POST_ID, "borderline"]).to_pandas()
    created = pq.read_table(Path(truth_dir) / "posts.parquet", columns=[c.POST_ID, c.CREATED_AT]).to_pandas()
    both = flags.merge(created, on=c.POST_ID, how="inner", validate="one_to_one")
    ms = to_ms(both[c.CREATED_AT])
    within = both["borderline"].astype(bool) & (ms >= first_ms) & (ms <= last_ms)
    return set(both.loc[within, c.POST_ID].astype("int64").tolist())


def _borderline(labels: Labels) -> set[int]:
    return {p for p, names in labels.posts.items() if "borderline" in names}


def precision_recall(labelled: set[int], truth: set[int]) -> dict:
    hits = len(labelled & truth)
    return {"labelled": len(labelled), "true_positives": hits,
            "precision": hits / len(labelled) if labelled else None,
            "recall": hits / len(truth) if truth else None}


def label_quality(lake_dir: Path, truth_dir: Path, day: str, rules: IntegrityRules | None = None) -> dict:
    """Precision and recall of the borderline labels as of the end of `day`: `combined` (rules and
    classifier: what `build_labels` writes), `classifier` (the post_labels rows taken alone) and
    `rules` (the event rules alone, counting the account rule's borderline posts only as the rules
    label them); `truth`: how many truly borderline posts the window holds."""
    rules = rules or IntegrityRules()
    end = day_end_ms(day)
    truth = truly_borderline(truth_dir, end - rules.window_ms, end)
    combined, _ = labels_from_lake(lake_dir, day, rules)
    by_rules, _ = labels_from_lake(lake_dir, day, rules, post_labels=False)
    classifier = _classifier_only(lake_dir, day, rules)
    return {"day": day, "truth": len(truth), "post_labels_read": "post_labels" in combined.rules_run,
            "combined": precision_recall(_borderline(combined), truth),
            "classifier": precision_recall(classifier, truth),
            "rules": precision_recall(_borderline(by_rules), truth)}


def _classifier_only(lake_dir: Path, day: str, rules: IntegrityRules) -> set[int]:
    """The posts the post_labels rows alone label borderline (the rules' inputs left empty)."""
    end = day_end_ms(day)
    classified = read_post_labels(lake_dir, lookback_first_day(day, rules.window_ms), day, end - rules.window_ms, end)
    if classified is None:
        return set()
    empty = pd.DataFrame(columns=[c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE])
    posts = pd.DataFrame(columns=[c.POST_ID, c.AUTHOR_ID, "created_ms", c.HASHTAGS])
    return _borderline(label(empty, None, posts, None, end, rules.changed(sensitive_hashtags=[]), classified))
