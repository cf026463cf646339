"""Feast on the hand-built feature world: point-in-time retrieval never leaks a later snapshot,
and the fast reader returns exactly what get_online_features returns."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.jobs import author, post, relationship, viewer
from features.jobs.inputs import day_end
from features.online.packer import materialize_packed
from features.online.parity import reader_vs_feast
from features.online.ranking import RankingFeatureReader
from features.retrieval import historical_features
from features.storage import write_feature_partition
from features.store import apply, repo_config
from features.tables import AUTHOR, POST, RELATIONSHIP, VIEWER
from feast import FeatureStore
from pipelines.defs.ingest.ingest import ingest_partition
from tests.builders import DAY, NEXT_DAY, PREV_DAY, feature_world

pytestmark = pytest.mark.spark
LOGS = ("users", "posts", "follows", "blocks", "engagements", "impressions")


@pytest.fixture(scope="module")
def store(spark, tmp_path_factory, redis_server):
    root = tmp_path_factory.mktemp("feast")
    landing, lake_dir = root / "landing", root / "lake"
    feature_world(landing)
    for day in (PREV_DAY, DAY):
        for log in LOGS:
            ingest_partition(spark, log, day, landing, lake_dir)
        for job, table in ((author, AUTHOR), (relationship, RELATIONSHIP), (post, POST), (viewer, VIEWER)):
            write_feature_partition(job.compute(spark, lake_dir, day), lake_dir, table, day)
    redis_server_url = redis_server.url.rsplit("/", 1)[0] + "/3"  # a db of its own
    feature_store = FeatureStore(config=repo_config(str(root / "registry.db"), redis_server_url))
    apply(feature_store, lake_dir)
    materialize_packed(feature_store, day_end(PREV_DAY) - timedelta(days=2), day_end(DAY))
    return feature_store


def at(day: str, hour: int) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


def test_point_in_time_retrieval_never_sees_a_later_snapshot(store):
    requests = pd.DataFrame({
        "viewer_id": [1, 1, 1], "author_id": [2, 2, 2], "post_id": [100, 100, 100],
        "event_timestamp": [at(DAY, 18), at(NEXT_DAY, 1), at(PREV_DAY, 20)],
    })
    got = historical_features(store, requests)

    # DAY 18:00 sees PREV_DAY's snapshot (cut at DAY 00:00): one like, no comment yet, even
    # though DAY's snapshot (written later, for DAY 24:00) holds two likes and a comment.
    assert got.loc[0, "viewer_author__like_7d"] == 1
    assert got.loc[0, "viewer_author__comment_28d"] == 0
    assert got.loc[1, "viewer_author__like_7d"] == 2
    assert got.loc[1, "viewer_author__comment_28d"] == 1
    # PREV_DAY 20:00: no snapshot is old enough yet.
    assert pd.isna(got.loc[2, "viewer_author__like_7d"])
    # request-time features: age of post 100 (created PREV_DAY 10:00) at each request
    assert got.loc[0, "request_features__post_age_hours_at_request"] == pytest.approx(32.0, abs=0.05)
    assert got.loc[1, "request_features__in_network"] == 1.0


def test_historical_retrieval_names_missing_columns(store):
    with pytest.raises(ValueError, match="post_id"):
        historical_features(store, pd.DataFrame({"viewer_id": [1], "author_id": [2],
                                                 "event_timestamp": [at(DAY, 1)]}))


KNOWN_VIEWERS, KNOWN_POSTS = [1, 2, 3, 4, 5], [100, 101, 102]
ids = st.one_of(st.sampled_from(KNOWN_VIEWERS), st.integers(6, 10_000))  # known or unknown


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(ids, ids, st.one_of(st.sampled_from(KNOWN_POSTS), st.integers(103, 10**6))),
                     min_size=1, max_size=40))
def test_fast_reader_equals_get_online_features(store, rows):
    reader = RankingFeatureReader(store)
    v, a, p = (np.array(col) for col in zip(*rows))
    parity = reader_vs_feast(store, reader, v, a, p, int(at(NEXT_DAY, 9).timestamp()))
    assert parity.ok, parity.mismatched[:5]
    assert parity.cells == len(rows) * len(reader.feature_names)


def test_unknown_entities_get_defaults_and_the_missing_flag(store):
    got = RankingFeatureReader(store).read([999], [998], [997], request_ts_s=int(at(NEXT_DAY, 9).timestamp()))
    in_network = got.names.index("request_features__in_network")
    assert got.missing[0, :in_network].all() and np.isnan(got.values[0, :in_network]).all()
    assert got.values[0, in_network] == 0.0 and not got.missing[0, in_network]
