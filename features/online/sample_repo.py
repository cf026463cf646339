"""A small, real Feast repo for proving the packed reader: parity tests and the benchmark use it.

Entities viewer / author / post, a composite viewer-author view, ~30 numeric features of every
packable type (Int32, Int64, Float32, Float64, Bool), nulls, several rows per entity over time,
and one String feature (not packable, not in the service). File offline store over Parquet written
here, Redis online store at the given endpoint, file registry - nothing mocked.

It mirrors the shape of the real repo (features/, another issue) without depending on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Bool, Float32, Float64, Int32, Int64, String
from feast.value_type import ValueType

from data.columns import AUTHOR_ID, POST_ID, VIEWER_ID
from data.days import DAY_S
from features.store import online_store_config

SERVICE = "ranking_v1"
EVENT_TS = "event_timestamp"
CREATED_TS = "created"
# all sample data lies in [ANCHOR - 30 days, ANCHOR]; windows are cut relative to it
ANCHOR = datetime(2025, 6, 1, tzinfo=UTC)

POST_FEATURES = {
    "post_impressions_7d": Int64,
    "post_likes_7d": Int64,
    "post_comments_7d": Int32,
    "post_like_rate": Float32,
    "post_dwell_mean_s": Float64,
    "post_age_hours": Float64,
    "post_is_video": Bool,
    "post_n_hashtags": Int32,
    "post_hide_rate": Float32,
    "post_shares_7d": Int64,
}
AUTHOR_FEATURES = {
    "author_followers": Int64,
    "author_posts_30d": Int32,
    "author_like_rate": Float32,
    "author_is_verified": Bool,
    "author_engagement_per_post": Float64,
    "author_report_rate": Float32,
    "author_account_age_days": Int32,
    "author_country": String,  # not numeric: not packed, not in the service
}
VIEWER_FEATURES = {
    "viewer_sessions_7d": Int32,
    "viewer_likes_7d": Int64,
    "viewer_like_rate": Float32,
    "viewer_is_private": Bool,
    "viewer_mean_dwell_s": Float64,
}
PAIR_FEATURES = {
    "va_likes_30d": Int64,
    "va_comments_30d": Int32,
    "va_affinity": Float32,
    "va_follows": Bool,
    "va_days_since_last": Float64,
    "va_hide_count": Int32,
}


@dataclass(frozen=True)
class SampleSizes:
    posts: int = 600
    authors: int = 120
    viewers: int = 40
    pairs: int = 1_500
    rows_per_entity: int = 2  # history: several rows per entity, Feast keeps the latest
    null_fraction: float = 0.1


@dataclass
class SampleRepo:
    store: FeatureStore
    service: FeatureService
    views: dict[str, FeatureView]
    frames: dict[str, pd.DataFrame]  # view name -> offline rows (what the Parquet holds)
    sources: dict[str, Path]

    def write_frame(self, view: str, frame: pd.DataFrame) -> None:
        """Replace a view's offline data (e.g. new rows before a second materialize)."""
        self.frames[view] = frame
        frame.to_parquet(self.sources[view], index=False)


def build_sample_repo(
    root: Path,
    redis_url: str,
    *,
    project: str = "loupe_sample",
    sizes: SampleSizes = SampleSizes(),
    seed: int = 7,
    db: int = 0,
    key_ttl_seconds: int | None = None,
    view_ttl: timedelta = timedelta(days=2),
) -> SampleRepo:
    """Write Parquet sources, apply the definitions; the caller materializes."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    online = online_store_config(redis_url, db)  # one server's db, or a Redis Cluster (db 0)
    if key_ttl_seconds:
        online["key_ttl_seconds"] = key_ttl_seconds
    config = RepoConfig(
        project=project,
        provider="local",
        registry=str(root / "registry.db"),
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=root,
    )
    store = FeatureStore(config=config)

    viewer = Entity(name="viewer", join_keys=[VIEWER_ID], value_type=ValueType.INT64)
    author = Entity(name="author", join_keys=[AUTHOR_ID], value_type=ValueType.INT64)
    post = Entity(name="post", join_keys=[POST_ID], value_type=ValueType.INT64)

    post_ids = np.arange(1, sizes.posts + 1) * 10  # ids with gaps: unknown ids exist in between
    author_ids = np.arange(1, sizes.authors + 1) * 7
    viewer_ids = np.arange(1, sizes.viewers + 1) * 3
    pair_viewers = rng.choice(viewer_ids, size=sizes.pairs)
    pair_authors = rng.choice(author_ids, size=sizes.pairs)
    pairs = pd.DataFrame({VIEWER_ID: pair_viewers, AUTHOR_ID: pair_authors}).drop_duplicates()

    specs = {
        "post_stats": ([post], {POST_ID: post_ids}, POST_FEATURES),
        "author_stats": ([author], {AUTHOR_ID: author_ids}, AUTHOR_FEATURES),
        "viewer_stats": ([viewer], {VIEWER_ID: viewer_ids}, VIEWER_FEATURES),
        "viewer_author": (
            [viewer, author],
            {VIEWER_ID: pairs[VIEWER_ID].to_numpy(), AUTHOR_ID: pairs[AUTHOR_ID].to_numpy()},
            PAIR_FEATURES,
        ),
    }
    views: dict[str, FeatureView] = {}
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, Path] = {}
    for name, (entities, keys, features) in specs.items():
        frame = sample_rows(rng, keys, features, sizes.rows_per_entity, sizes.null_fraction)
        path = root / "data" / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        source = FileSource(
            name=f"{name}_source",
            path=str(path),
            timestamp_field=EVENT_TS,
            created_timestamp_column=CREATED_TS,
        )
        key_fields = [Field(name=k, dtype=Int64) for k in keys]
        views[name] = FeatureView(
            name=name,
            entities=entities,
            ttl=view_ttl,
            schema=key_fields + [Field(name=f, dtype=t) for f, t in features.items()],
            online=True,
            source=source,
        )
        frames[name] = frame
        sources[name] = path

    service = FeatureService(
        name=SERVICE,
        features=[
            views["post_stats"],
            views["author_stats"][[f for f, t in AUTHOR_FEATURES.items() if t is not String]],
            views["viewer_author"],
            views["viewer_stats"],
        ],
    )
    store.apply([viewer, author, post, *views.values(), service])
    return SampleRepo(store, service, views, frames, sources)


def sample_rows(
    rng: np.random.Generator,
    keys: dict[str, np.ndarray],
    features: Mapping[str, object],
    rows_per_entity: int,
    null_fraction: float,
    end: datetime = ANCHOR,
) -> pd.DataFrame:
    """`rows_per_entity` rows per key tuple at random times in [end - 30 days, end]."""
    n_keys = len(next(iter(keys.values())))
    n = n_keys * rows_per_entity
    frame = pd.DataFrame({k: np.tile(np.asarray(v, dtype=np.int64), rows_per_entity) for k, v in keys.items()})
    offsets = rng.uniform(0, 30 * DAY_S, size=n)
    ts = pd.Timestamp(end) - pd.to_timedelta(offsets, unit="s")
    frame[EVENT_TS] = ts.floor("us")
    frame[CREATED_TS] = frame[EVENT_TS]
    for name, dtype in features.items():
        frame[name] = _column(rng, dtype, n, null_fraction)
    return frame


def _column(rng: np.random.Generator, dtype: object, n: int, null_fraction: float) -> pd.Series:
    nulls = rng.random(n) < null_fraction
    if dtype is Int64:
        s = pd.Series(rng.integers(0, 5_000_000, size=n), dtype="Int64")
    elif dtype is Int32:
        s = pd.Series(rng.integers(0, 500, size=n), dtype="Int32")
    elif dtype is Float32:
        s = pd.Series(rng.random(n).astype(np.float32), dtype="Float32")
    elif dtype is Float64:
        s = pd.Series(rng.gamma(2.0, 20.0, size=n), dtype="Float64")
    elif dtype is Bool:
        s = pd.Series(rng.random(n) < 0.3, dtype="boolean")
    elif dtype is String:
        s = pd.Series(rng.choice(["br", "de", "in", "us"], size=n), dtype="string")
    else:
        raise TypeError(dtype)
    s[nulls] = pd.NA
    return s
