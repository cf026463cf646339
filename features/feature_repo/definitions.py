"""Loupe's Feast repo, top-down: entities -> sources -> feature views -> on-demand views ->
feature services. Training (point-in-time retrieval) and serving (online) both use
`feed_ranker_v1`; a change of features means a new `_v2`, never an edit in place.

Sources point at the Spark feature tables in the lake (features/tables.py names them), so the
definitions and the jobs that write the data cannot drift apart. `build_repo(lake_dir)` builds the
objects for a workspace; the module-level names are the configured workspace's, for `feast` CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.data_format import ParquetFormat
from feast.on_demand_feature_view import OnDemandFeatureView, on_demand_feature_view
from feast.types import Float32, Float64, Int64
from feast.value_type import ValueType

from data import columns as c
from data.settings import get_settings
from features.storage import feature_table_dir
from features.tables import AUTHOR, EVENT_TIMESTAMP, POST, RELATIONSHIP, VIEWER, FeatureTable

SERVICE_NAME = "feed_ranker_v1"
REQUEST_TS = "request_ts_s"

# --- entities ----------------------------------------------------------------------------------
viewer = Entity(name="viewer", join_keys=[c.VIEWER_ID], value_type=ValueType.INT64,
                description="The user the feed is ranked for.")
author = Entity(name="author", join_keys=[c.AUTHOR_ID], value_type=ValueType.INT64,
                description="The user who posted a candidate.")
post = Entity(name="post", join_keys=[c.POST_ID], value_type=ValueType.INT64,
              description="A candidate post.")
ENTITIES = {RELATIONSHIP.name: [viewer, author], AUTHOR.name: [author], POST.name: [post],
            VIEWER.name: [viewer]}


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


# --- on-demand views ---------------------------------------------------------------------------
request = RequestSource(
    name="ranking_request",
    schema=[Field(name=REQUEST_TS, dtype=Int64)],
    description="Known only at request time: when the feed is being ranked (epoch seconds).",
)


def request_features_view(post_view: FeatureView, pair_view: FeatureView) -> OnDemandFeatureView:
    @on_demand_feature_view(
        sources=[request, post_view, pair_view],
        schema=[Field(name="post_age_hours_at_request", dtype=Float64),
                Field(name="in_network", dtype=Float64)],
        mode="pandas",
        description="Post age when the feed is ranked (not when the snapshot was cut), and "
        "whether the viewer follows the author.",
    )
    def request_features(inputs: pd.DataFrame) -> pd.DataFrame:
        # Feast ships this function by its source: it may use only its own imports and literals.
        import pandas as pd

        out = pd.DataFrame(index=inputs.index)
        created = inputs["created_at_s"].astype("float64")
        age_h = (inputs["request_ts_s"].astype("float64") - created) / 3600.0
        out["post_age_hours_at_request"] = age_h.clip(lower=0.0)
        out["in_network"] = inputs["is_following"].astype("float64").fillna(0.0)
        return out

    return request_features


# --- feature services --------------------------------------------------------------------------
@dataclass(frozen=True)
class FeastRepo:
    entities: list[Entity]
    views: dict[str, FeatureView]
    request_features: OnDemandFeatureView
    feed_ranker_v1: FeatureService

    @property
    def objects(self) -> list:
        """In the order `feast apply` registers them."""
        return [*self.entities, *self.views.values(), self.request_features, self.feed_ranker_v1]


def build_repo(lake_dir: Path) -> FeastRepo:
    views = {t.name: feature_view(t, lake_dir) for t in (POST, AUTHOR, VIEWER, RELATIONSHIP)}
    odfv = request_features_view(views[POST.name], views[RELATIONSHIP.name])
    service = FeatureService(
        name=SERVICE_NAME,
        features=[*views.values(), odfv],
        description="Everything the Home and Explore rankers score a (viewer, post) candidate with.",
    )
    return FeastRepo([viewer, author, post], views, odfv, service)


# The configured workspace's objects, found by `feast apply` / `feast materialize-incremental`.
_repo = build_repo(get_settings().lake_dir)
viewer_author_view = _repo.views[RELATIONSHIP.name]
author_view = _repo.views[AUTHOR.name]
post_view = _repo.views[POST.name]
viewer_view = _repo.views[VIEWER.name]
request_features = _repo.request_features
feed_ranker_v1 = _repo.feed_ranker_v1
