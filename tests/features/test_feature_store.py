"""Feast on the hand-built feature world: point-in-time retrieval never leaks a later snapshot,
and the fast reader returns exactly what get_online_features returns.

Beside the shared world: posts 103 (cars, Food, travel) and 104 (no hashtags) by author 3; viewer 5
saves 103 and hides 100 (food) on DAY, so its interest vector is (cars + travel) / sqrt 2.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.days import day_end
from data.ingest.partition import ingest_partition
from features.feature_repo.definitions import SOURCE_ONLY_PREFIXES
from features.online.packer import materialize_packed
from features.online.parity import reader_vs_feast
from features.online.ranking import RankingFeatureReader
from features.retrieval import historical_features
from features.snapshots import SNAPSHOT_TABLES, write_snapshot
from features.store import apply, repo_config
from features.tables import POST_TAGS, VIEWER_TAGS
from tests.builders import DAY, NEXT_DAY, PREV_DAY, engagement, feature_world, write_jsonl
from tests.builders import post as post_row

LOGS = ("users", "posts", "follows", "blocks", "engagements", "impressions")
INTEREST_MATCH = "request_features__interest_match"


@pytest.fixture(scope="module")
def store(spark, tmp_path_factory, redis_server):
    root = tmp_path_factory.mktemp("feast")
    landing, lake_dir = root / "landing", root / "lake"
    feature_world(landing)
    extra = "part-00001.jsonl"
    write_jsonl(landing, "posts", DAY, [
        post_row(103, 3, f"{DAY}T03:00:00.000Z", hashtags=["cars", "Food", "travel"]),
        post_row(104, 3, f"{DAY}T04:00:00.000Z", hashtags=[]),
    ], name=extra)
    write_jsonl(landing, "engagements", DAY, [
        engagement("t1", viewer=5, post_id=103, author_id=3, type="save", ts=f"{DAY}T10:00:00.000Z"),
        engagement("t2", viewer=5, post_id=100, type="hide", ts=f"{DAY}T11:00:00.000Z"),
    ], name=extra)
    for day in (PREV_DAY, DAY):
        for log in LOGS:
            ingest_partition(spark, log, day, landing, lake_dir)
        for table in SNAPSHOT_TABLES:  # one at a time, post after author
            write_snapshot(spark, lake_dir, table, day)
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
    # viewer 1 engaged only with food posts (from PREV_DAY's like on): the same bucket as post 100
    assert got.loc[0, INTEREST_MATCH] == pytest.approx(1.0)
    assert got.loc[1, INTEREST_MATCH] == pytest.approx(1.0)
    assert got.loc[2, INTEREST_MATCH] == 0.0  # no snapshot yet: both sides missing


def test_the_service_serves_interest_match_without_the_raw_tag_vectors(store):
    rows = [(5, 3, 103), (5, 2, 100), (1, 2, 100), (3, 3, 103), (1, 3, 104), (1, 2, 999)]
    entity_rows = [{"viewer_id": v, "author_id": a, "post_id": p,
                    "request_ts_s": int(at(NEXT_DAY, 9).timestamp())} for v, a, p in rows]
    online = store.get_online_features(features=store.get_feature_service("feed_ranker_v1"),
                                       entity_rows=entity_rows, full_feature_names=True).to_dict()
    expected = [
        2 / math.sqrt(6),  # (cars + travel)/sqrt 2 . (cars + food + travel)/sqrt 3
        0.0,  # viewer 5's food weight is clipped: the hide outweighs nothing positive
        1.0,  # food . food
        0.0,  # viewer 3 never engaged: no tag row
        0.0,  # post 104 has no hashtags
        0.0,  # unknown post
    ]
    assert online[INTEREST_MATCH] == pytest.approx(expected)
    offline = historical_features(store, pd.DataFrame({
        "viewer_id": [r[0] for r in rows], "author_id": [r[1] for r in rows],
        "post_id": [r[2] for r in rows], "event_timestamp": [at(NEXT_DAY, 9)] * len(rows),
    }))
    assert offline[INTEREST_MATCH].tolist() == pytest.approx(expected)
    # The tag views are ODFV sources outside the service: online they stay out of the answer;
    # Feast 0.67's historical retrieval returns their columns too (training drops them by prefix).
    raw = {f"{t.name}__{f}" for t in (VIEWER_TAGS, POST_TAGS) for f in t.features}
    assert not raw & set(online)
    assert {n for n in offline.columns if n.startswith(SOURCE_ONLY_PREFIXES)} == raw

    reader = RankingFeatureReader(store)
    service = store.get_feature_service("feed_ranker_v1")
    assert reader.feature_names == [f"{p.name_to_use()}__{f.name}" for p in service.feature_view_projections
                                    for f in p.features]
    assert reader.feature_names[-1] == INTEREST_MATCH
    v, a, p = (np.array(col) for col in zip(*rows))
    parity = reader_vs_feast(store, reader, v, a, p, int(at(NEXT_DAY, 9).timestamp()))
    assert parity.ok, parity.mismatched[:5]
    got = reader.read(v, a, p, int(at(NEXT_DAY, 9).timestamp()))
    assert got.values[:, -1].tolist() == pytest.approx(expected, abs=1e-6)
    assert not got.missing[:, -1].any()


@pytest.mark.parametrize("unit", ["us", "ms", "ns", "s", "naive-us"])
def test_request_age_is_right_whatever_the_timestamp_unit(store, unit):
    """The lake's Parquet is microseconds (Spark), the contracts milliseconds: training read the
    raw int64 as nanoseconds and every post was 0 h old. Each unit must give the same age."""
    ts = pd.Series([at(DAY, 18), at(NEXT_DAY, 1)])
    if unit == "naive-us":
        ts = ts.dt.tz_localize(None).astype("datetime64[us]")
    else:
        ts = ts.astype(f"datetime64[{unit}, UTC]")
    requests = pd.DataFrame({"viewer_id": [1, 1], "author_id": [2, 2], "post_id": [100, 100], "event_timestamp": ts})
    got = historical_features(store, requests)
    # post 100 was created PREV_DAY 10:00
    assert got["request_features__post_age_hours_at_request"].tolist() == pytest.approx([32.0, 39.0], abs=0.05)


def test_historical_retrieval_names_missing_columns(store):
    with pytest.raises(ValueError, match="post_id"):
        historical_features(store, pd.DataFrame({"viewer_id": [1], "author_id": [2],
                                                 "event_timestamp": [at(DAY, 1)]}))


KNOWN_VIEWERS, KNOWN_POSTS = [1, 2, 3, 4, 5], [100, 101, 102, 103, 104]
ids = st.one_of(st.sampled_from(KNOWN_VIEWERS), st.integers(6, 10_000))  # known or unknown


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(ids, ids, st.one_of(st.sampled_from(KNOWN_POSTS), st.integers(105, 10**6))),
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
