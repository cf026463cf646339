"""Loupe's Feast repo, top-down: entities -> sources -> feature views -> on-demand views ->
feature services. Training (point-in-time retrieval) and serving (online) both use a ranking
service: `feed_ranker_v1` (the daily views) or `feed_ranker_v2` (the same, and the stream
processor's real-time views); a change of features means a new version, never an edit in place.

Sources point at the Spark feature tables in the lake (features/tables.py names them), so the
definitions and the jobs that write the data cannot drift apart. The real-time views are fed by
push sources: the stream processor (features/streaming/, docs/streaming_features.md) writes them
online; `realtime_v1` serves their numeric features. `build_repo(lake_dir)` builds the objects for a
workspace; the module-level names are the configured workspace's, for `feast` CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource
from feast.data_format import ParquetFormat
from feast.on_demand_feature_view import OnDemandFeatureView, on_demand_feature_view
from feast.types import Array, Float32, Float64, Int64, String
from feast.value_type import ValueType

from data import columns as c
from data.settings import get_settings
from data.vocabulary import Vocabulary
from features.services import REALTIME_VIEWS, SERVICE_V1, SERVICE_V2
from features.storage import feature_table_dir
from features.streaming import spec as rt
from features.streaming.backfill import realtime_dir
from features.tables import (
    AUTHOR,
    EVENT_TIMESTAMP,
    POST,
    POST_TAGS,
    RELATIONSHIP,
    VIEWER,
    VIEWER_TAGS,
    FeatureTable,
)

SERVICE_NAME = SERVICE_V1
REQUEST_TS = "request_ts_s"
# Views read only as sources of `request_features`, not listed in the service (not model inputs).
# get_online_features leaves their columns out; Feast's get_historical_features returns them too,
# as `<view>__<feature>`: training sets drop the columns starting with these prefixes.
SOURCE_ONLY_VIEWS = (VIEWER_TAGS.name, POST_TAGS.name)
SOURCE_ONLY_PREFIXES = tuple(f"{v}__" for v in SOURCE_ONLY_VIEWS)

# --- entities ----------------------------------------------------------------------------------
viewer = Entity(name="viewer", join_keys=[c.VIEWER_ID], value_type=ValueType.INT64,
                description="The user the feed is ranked for.")
author = Entity(name="author", join_keys=[c.AUTHOR_ID], value_type=ValueType.INT64,
                description="The user who posted a candidate.")
post = Entity(name="post", join_keys=[c.POST_ID], value_type=ValueType.INT64,
              description="A candidate post.")
ENTITIES = {RELATIONSHIP.name: [viewer, author], AUTHOR.name: [author], POST.name: [post],
            VIEWER.name: [viewer], POST_TAGS.name: [post], VIEWER_TAGS.name: [viewer]}


# --- sources -----------------------------------------------------------------------------------
def lake_source(table: FeatureTable, lake_dir: Path) -> FileSource:
    return FileSource(
        name=f"{table.name}_source",
        # Every daily snapshot; the offline store (DuckDB) reads the glob, Spark writes the parts.
        path=str(feature_table_dir(lake_dir, table) / "dt=*" / "*.parquet"),
        file_format=ParquetFormat(),
        timestamp_field=EVENT_TIMESTAMP,
        description=f"lake/features/{table.name}/dt=<day>/: one snapshot per day (Spark job).",
    )


# --- feature views -----------------------------------------------------------------------------
def feature_view(table: FeatureTable, lake_dir: Path) -> FeatureView:
    return FeatureView(
        name=table.name,
        entities=ENTITIES[table.name],
        ttl=timedelta(days=table.ttl_days),
        schema=[Field(name=f, dtype=Float32) for f in table.features],
        source=lake_source(table, lake_dir),
        online=True,
        description=table.description,
    )


# --- real-time views (push sources: the stream processor writes them online) --------------------
def push_source(view: str, lake_dir: Path) -> PushSource:
    # Feast requires a batch source behind a push source. The backfill writes there the rows the
    # stream processor would have written (features/streaming/backfill.py), for point-in-time
    # training sets; the daily materialization leaves push-fed views alone (features/online/packer.py
    # online_view_names).
    batch = FileSource(
        name=f"{view}_batch",
        path=str(realtime_dir(lake_dir, view) / "*.parquet"),
        file_format=ParquetFormat(),
        timestamp_field=EVENT_TIMESTAMP,
        description="The rows the stream processor would have written, replayed from the lake "
                    "(features/streaming/backfill.py), for point-in-time retrieval.",
    )
    return PushSource(name=f"{view}_push", batch_source=batch,
                      description=f"{view} rows from the stream processor (features/streaming/).")


def realtime_views(lake_dir: Path, vocabulary: Vocabulary) -> dict[str, FeatureView]:
    # ttl: how long a row stays valid for point-in-time retrieval; online, rows are as of their
    # event time (the entity's latest event), which the reader returns.
    types = rt.engagement_types(vocabulary)
    specs = [
        (rt.POST_VIEW, [post], [Field(name=f, dtype=Float32) for f in rt.post_features(types)],
         ("Per post: engagements per type over 5 min, 1 h and 24 h of event time, positive engagements "
          "per window, and velocity (per minute over 5 min minus per minute over 1 h).")),
        (rt.AUTHOR_VIEW, [author], [Field(name=f, dtype=Float32) for f in rt.AUTHOR_FEATURES],
         "Per author: positive engagements on their posts over 1 h and 24 h, negative over 24 h."),
        (rt.PAIR_VIEW, [viewer, author], [Field(name=f, dtype=Float32) for f in rt.PAIR_FEATURES],
         ("Per viewer and author: the viewer's engagements with the author's posts on the UTC day of "
          "the pair's latest one (positive, negative, all).")),
        (rt.SEQUENCE_VIEW, [viewer],
         [Field(name=f, dtype=Array(String if f == "recent_types" else Int64)) for f in rt.SEQUENCE_FEATURES],
         (f"Per viewer: the last {rt.SEQUENCE_LENGTH} engagements, newest first (an action sequence for "
          "later models; not numeric, so Feast's online store only, not the packed view).")),
    ]
    return {name: FeatureView(name=name, entities=entities, ttl=timedelta(days=1), schema=schema,
                              source=push_source(name, lake_dir), online=True, description=description)
            for name, entities, schema, description in specs}


# --- on-demand views ---------------------------------------------------------------------------
request = RequestSource(
    name="ranking_request",
    schema=[Field(name=REQUEST_TS, dtype=Int64)],
    description="Known only at request time: when the feed is being ranked (epoch seconds).",
)


def request_features_view(pair_view: FeatureView, viewer_tags_view: FeatureView,
                          post_tags_view: FeatureView) -> OnDemandFeatureView:
    @on_demand_feature_view(
        # The tag views are sources only: Feast reads them for this view although the feature
        # service does not list them, and the model gets interest_match, not 128 raw columns
        # (SOURCE_ONLY_PREFIXES).
        sources=[request, pair_view, viewer_tags_view, post_tags_view],
        schema=[Field(name="post_age_hours_at_request", dtype=Float64),
                Field(name="in_network", dtype=Float64),
                Field(name="interest_match", dtype=Float64)],
        mode="pandas",
        description="Post age when the feed is ranked (not when the snapshot was cut), whether "
        "the viewer follows the author, and the cosine of the viewer's and the post's hashtag "
        "bucket vectors (0 when either is unknown).",
    )
    def request_features(inputs: pd.DataFrame) -> pd.DataFrame:
        # Feast ships this function by its source: it may use only its own imports and literals.
        import pandas as pd

        out = pd.DataFrame(index=inputs.index)
        # post_tags rows exist from the moment a post is published (post rows only from the end of
        # its first day): the age of a fresh post is known.
        created = inputs["posted_at_s"].astype("float64")
        age_h = (inputs["request_ts_s"].astype("float64") - created) / 3600.0
        out["post_age_hours_at_request"] = age_h.clip(lower=0.0)
        out["in_network"] = inputs["is_following"].astype("float64").fillna(0.0)
        # Both vectors are L2-normalised: the dot product is the cosine. A missing side (unknown
        # viewer or post) counts as zeros. Summed bucket by bucket, in order: the fast reader
        # (features/online/ranking.py) adds in the same order and gets the same bits.
        match = pd.Series(0.0, index=inputs.index)
        for k in range(64):  # TAG_BUCKETS
            viewer_k = inputs[f"viewer_tag_{k:02d}"].astype("float64").fillna(0.0)
            post_k = inputs[f"post_tag_{k:02d}"].astype("float64").fillna(0.0)
            match = match + viewer_k * post_k
        out["interest_match"] = match
        return out

    return request_features


# --- feature services --------------------------------------------------------------------------
@dataclass(frozen=True)
class FeastRepo:
    entities: list[Entity]
    views: dict[str, FeatureView]
    request_features: OnDemandFeatureView
    feed_ranker_v1: FeatureService
    realtime_views: dict[str, FeatureView]
    realtime_v1: FeatureService
    feed_ranker_v2: FeatureService

    @property
    def objects(self) -> list:
        """In the order `feast apply` registers them."""
        return [*self.entities, *self.views.values(), *self.realtime_views.values(), self.request_features,
                self.feed_ranker_v1, self.realtime_v1, self.feed_ranker_v2]


def build_repo(lake_dir: Path, vocabulary: Vocabulary | None = None) -> FeastRepo:
    """`vocabulary`: whose engagement types the post view counts (default: the settings')."""
    tables = (POST, AUTHOR, VIEWER, RELATIONSHIP, VIEWER_TAGS, POST_TAGS)
    views = {t.name: feature_view(t, lake_dir) for t in tables}
    odfv = request_features_view(views[RELATIONSHIP.name], views[VIEWER_TAGS.name],
                                 views[POST_TAGS.name])
    model_views = [views[t.name] for t in (POST, AUTHOR, VIEWER, RELATIONSHIP)]
    service = FeatureService(
        name=SERVICE_NAME,
        features=[*model_views, odfv],
        description="Everything the Home and Explore rankers score a (viewer, post) candidate with.",
    )
    if vocabulary is None:
        vocabulary = get_settings().log_vocabulary()
    live = realtime_views(lake_dir, vocabulary)
    realtime = FeatureService(
        name=rt.SERVICE,
        features=[live[view] for view in REALTIME_VIEWS],
        description="The stream processor's seconds-fresh numeric features (the packed reader serves them).",
    )
    live_numeric = [live[view] for view in REALTIME_VIEWS]
    service_v2 = FeatureService(
        name=SERVICE_V2,
        features=[*model_views, *live_numeric, odfv],
        description=f"{SERVICE_NAME}'s features and the real-time views' (how a post, its author and the "
                    "viewer with the author are doing today, as of their latest engagement).",
    )
    return FeastRepo([viewer, author, post], views, odfv, service, live, realtime, service_v2)


# The configured workspace's objects, found by `feast apply` / `feast materialize-incremental`.
_repo = build_repo(get_settings().lake_dir)
viewer_author_view = _repo.views[RELATIONSHIP.name]
author_view = _repo.views[AUTHOR.name]
post_view = _repo.views[POST.name]
viewer_view = _repo.views[VIEWER.name]
viewer_tags_view = _repo.views[VIEWER_TAGS.name]
post_tags_view = _repo.views[POST_TAGS.name]
request_features = _repo.request_features
feed_ranker_v1 = _repo.feed_ranker_v1
post_realtime_view = _repo.realtime_views[rt.POST_VIEW]
author_realtime_view = _repo.realtime_views[rt.AUTHOR_VIEW]
viewer_author_today_view = _repo.realtime_views[rt.PAIR_VIEW]
viewer_sequence_view = _repo.realtime_views[rt.SEQUENCE_VIEW]
realtime_v1 = _repo.realtime_v1
feed_ranker_v2 = _repo.feed_ranker_v2
