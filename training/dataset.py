"""Training sets: one row per logged impression of a day, its labels, and the configured feature
service's features as of the request time (Feast point-in-time retrieval; `[features] service`).

Impressions of day D are those whose `ts` falls on D; late rows land a day later, so D's and D+1's
lake partitions are read. Engagements are attributed by (request_id, post_id) from partitions
D..D+2 (a label window of two days after the impression). Requests are sampled per surface
(`max_requests_per_day`) with a seed, deterministically, so a day's set is reproducible.
Stored under lake/training/examples/dt=<D>/ (Parquet), which the rankers read by day.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from feast import FeatureStore

from data import columns as c
from data import lake
from data.days import days_after
from features.feature_repo.definitions import SOURCE_ONLY_PREFIXES
from features.retrieval import historical_features
from features.tables import EVENT_TIMESTAMP
from training.config import TrainingConfig
from training.errors import TrainingDataError
from training.heads import ValueHeads
from training.labels import attach_labels

EXAMPLES_DIR = "training/examples"
LABEL_WINDOW_DAYS = 2
FEATURE_SEPARATOR = "__"  # Feast's full feature names: <view>__<feature>


def examples_dir(lake_dir: Path, day: str) -> Path:
    return Path(lake_dir) / EXAMPLES_DIR / f"dt={day}"


def example_days(lake_dir: Path) -> list[str]:
    root = Path(lake_dir) / EXAMPLES_DIR
    return sorted(p.name[3:] for p in root.glob("dt=*") if (p / "_SUCCESS").exists())


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [col for col in frame.columns if FEATURE_SEPARATOR in col]


def _days_from(day: str, n: int) -> list[str]:
    return [days_after(day, k) for k in range(n)]


def _utc(ts: pd.Series) -> pd.Series:
    ts = pd.to_datetime(ts)
    return ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")


def sample_requests(impressions: pd.DataFrame, max_requests: int, seed: int, day: str) -> pd.DataFrame:
    """At most `max_requests` whole requests per surface (0 keeps all); same input, same sample."""
    if max_requests <= 0:
        return impressions
    rng = np.random.default_rng([seed, date.fromisoformat(day).toordinal()])
    keep = []
    for _, requests in impressions.groupby(c.SURFACE)[c.REQUEST_ID]:
        unique = np.sort(requests.unique())
        keep.append(unique if len(unique) <= max_requests else rng.choice(unique, max_requests, replace=False))
    return impressions[impressions[c.REQUEST_ID].isin(np.concatenate(keep))] if keep else impressions


def build_examples(lake_dir: Path, day: str, cfg: TrainingConfig, heads: ValueHeads) -> pd.DataFrame:
    """Day D's sampled impressions with author, creation time and labels, one y_<head> column per
    head of the log vocabulary (no features yet)."""
    lake_dir = Path(lake_dir)
    if not (lake.partition_dir(lake_dir, "impressions", day) / "_SUCCESS").exists():
        raise TrainingDataError(f"no impressions partition for {day} in {lake_dir}")
    cols = [c.REQUEST_ID, c.VIEWER_ID, c.POST_ID, c.POSITION, c.SURFACE, c.SOURCE, c.TS]
    impressions = lake.read_partitions(lake_dir, "impressions", _days_from(day, 2), cols, lake.ts_on_day(day))
    impressions = impressions.drop_duplicates([c.REQUEST_ID, c.POST_ID])
    impressions = sample_requests(impressions, cfg.max_requests_per_day, cfg.seed, day)

    posts = lake.read_partitions(lake_dir, "posts", lake.partition_days(lake_dir, "posts"),
                  [c.POST_ID, c.AUTHOR_ID, c.CREATED_AT, c.DELETED_AT])
    posts = posts[posts[c.DELETED_AT].isna()].drop_duplicates(c.POST_ID)[[c.POST_ID, c.AUTHOR_ID, c.CREATED_AT]]
    frame = impressions.merge(posts, on=c.POST_ID, how="inner")  # a post the lake never saw cannot be ranked

    requests = pa.array(frame[c.REQUEST_ID].unique())
    engagements = lake.read_partitions(
        lake_dir, "engagements", _days_from(day, LABEL_WINDOW_DAYS + 1),
        [c.REQUEST_ID, c.POST_ID, c.TYPE, c.VALUE], ds.field(c.REQUEST_ID).isin(requests),
    )
    frame = attach_labels(frame, engagements, heads, cfg)
    frame[c.TS] = _utc(frame[c.TS])
    frame[c.CREATED_AT] = _utc(frame[c.CREATED_AT])
    frame["day"] = day
    return frame.sort_values([c.SURFACE, c.REQUEST_ID, c.POSITION]).reset_index(drop=True)


def with_features(store: FeatureStore, examples: pd.DataFrame, service: str) -> pd.DataFrame:
    """Point-in-time features of every example from the feature service `service`, as of its
    impression time."""
    entity = examples.rename(columns={c.TS: EVENT_TIMESTAMP})
    features = historical_features(store, entity, service)
    features = features.rename(columns={EVENT_TIMESTAMP: c.TS})
    # Feast also returns the on-demand view's source-only views (raw tag vectors): not model inputs.
    features = features.drop(columns=[col for col in features.columns if col.startswith(SOURCE_ONLY_PREFIXES)])
    names = feature_columns(features)
    features[names] = features[names].astype(np.float32)
    return features


def write_examples(frame: pd.DataFrame, lake_dir: Path, day: str) -> Path:
    """Overwrite day D's training set (re-running a day replaces it)."""
    path = examples_dir(lake_dir, day)
    path.mkdir(parents=True, exist_ok=True)
    (path / "_SUCCESS").unlink(missing_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path / "part-00000.parquet")
    (path / "_SUCCESS").touch()
    return path


def read_examples(lake_dir: Path, days: list[str], surface: str | None = None) -> pd.DataFrame:
    missing = [d for d in days if not (examples_dir(lake_dir, d) / "_SUCCESS").exists()]
    if missing:
        raise TrainingDataError(f"training examples missing for days {missing}: materialize training/examples first")
    filt = ds.field(c.SURFACE) == surface if surface else None
    tables = [pq.read_table(examples_dir(lake_dir, d), filters=filt) for d in days]
    return pa.concat_tables(tables, promote_options="default").to_pandas()
