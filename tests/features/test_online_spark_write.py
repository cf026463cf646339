"""`refresh_window` (Spark) writes what Feast's materialize + the packer's read-back write.

The twin repos of test_online_bulk_write: one database refreshed by Feast's own materialize, the
other from Spark. A full refresh is byte for byte Feast's; an incremental one sends only the rows
newer than the store, and of those only the ones whose values changed, and Feast's
get_online_features then returns the same values from both.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from data.columns import POST_ID
from features.online import materialize_packed
from features.online.sample_repo import ANCHOR, EVENT_TS, POST_FEATURES, SampleSizes, sample_rows
from features.online.spark_write import refresh_window
from tests.features.test_online_bulk_write import (
    BULK_DB,
    FEAST_DB,
    FULL_WINDOW,
    SIZES,
    _add_rows,
    _client,
    _contents,
    _twin_repos,
    assert_same_redis,
)

pytestmark = pytest.mark.spark
MARKER = b":_refreshed"  # refresh_window's record of what it refreshed


def _values(repo, posts: list[int]) -> dict:
    features = [f"post_stats:{f}" for f in POST_FEATURES]
    return repo.store.get_online_features(features=features, entity_rows=[{POST_ID: p} for p in posts]).to_dict()


def test_full_then_newer_rows_equal_feast(spark, redis_server, tmp_path):
    by_feast, by_spark = _twin_repos(tmp_path, redis_server.url, sizes=SIZES)
    materialize_packed(by_feast.store, *FULL_WINDOW)
    first = refresh_window(spark, by_spark.store, *FULL_WINDOW)
    assert assert_same_redis(redis_server.url, MARKER) > 2 * SIZES.posts
    assert all(r.mode.startswith("full") for r in first.values())
    assert first["post_stats"].written == by_feast.frames["post_stats"][POST_ID].nunique()
    for name in by_spark.views:  # the registry records the window, as materialize does
        intervals = by_spark.store.get_feature_view(name).materialization_intervals
        assert (FULL_WINDOW[0], FULL_WINDOW[1]) in [(a, b) for a, b in intervals], name

    # newer rows: incremental (no read of the store), same bytes as Feast's
    posts = sorted(int(p) for p in by_feast.frames["post_stats"][POST_ID].unique())[:10] + [5]
    newer = (ANCHOR + timedelta(minutes=1), ANCHOR + timedelta(days=1))
    for repo in (by_feast, by_spark):
        _add_rows(repo, ANCHOR + timedelta(hours=1), posts)
    materialize_packed(by_feast.store, *newer, ["post_stats"])
    second = refresh_window(spark, by_spark.store, *newer, ["post_stats"])["post_stats"]
    assert (second.mode, second.rows, second.written) == ("incremental", len(posts), len(posts))
    assert_same_redis(redis_server.url, MARKER)

    # the whole history again: post_stats was last refreshed from ANCHOR on, so its older rows are
    # checked against the store (a full refresh); the other views were refreshed with this very
    # window, nothing in it is newer. Feast's staleness rule keeps every stored row either way.
    materialize_packed(by_feast.store, *FULL_WINDOW)
    again = refresh_window(spark, by_spark.store, *FULL_WINDOW)
    assert again["post_stats"].mode.startswith("full: the window starts before")
    assert {r.mode for name, r in again.items() if name != "post_stats"} == {"incremental"}
    assert all(r.written == 0 for r in again.values())
    assert_same_redis(redis_server.url, MARKER)


def test_incremental_day_sends_only_changed_rows(spark, redis_server, tmp_path):
    """Daily snapshots: every entity has a row each day; the second day changes a third of them in
    every feature and a third in one feature only. Only those rows are sent, and of a row only the
    changed features go to Feast's hash (whole where the hash is gone): every feature field ends
    byte for byte the twin's, and Feast's online values equal the Feast-materialized twin's."""
    sizes = SampleSizes(posts=60, authors=6, viewers=4, pairs=20, rows_per_entity=1, null_fraction=0.2)
    by_feast, by_spark = _twin_repos(tmp_path, redis_server.url, sizes=sizes)
    day1 = by_feast.frames["post_stats"].copy()
    day1[EVENT_TS] = pd.Timestamp(ANCHOR)
    day1["created"] = day1[EVENT_TS]
    day2 = day1.copy()
    day2[EVENT_TS] = day2["created"] = pd.Timestamp(ANCHOR + timedelta(days=1))
    changed = day2.index[::3]
    fresh = sample_rows(np.random.default_rng(3), {POST_ID: day2.loc[changed, POST_ID].to_numpy()},
                        POST_FEATURES, 1, 0.3)
    for name in POST_FEATURES:
        day2.loc[changed, name] = fresh[name].to_numpy()
    one = day2.index[1::3]  # one feature each: a like rate moved, or became null
    day2.loc[one, "post_like_rate"] = fresh["post_like_rate"].to_numpy()[: len(one)]
    day2.loc[one[::4], "post_like_rate"] = pd.NA
    same = np.logical_and.reduce([(day2[f] == day1[f]).fillna(False) | (day2[f].isna() & day1[f].isna())
                                  for f in POST_FEATURES])
    for repo in (by_feast, by_spark):
        repo.write_frame("post_stats", pd.concat([day1, day2], ignore_index=True))

    window1 = (ANCHOR - timedelta(days=1), ANCHOR)
    window2 = (ANCHOR, ANCHOR + timedelta(days=1))
    for window in (window1, window2):
        materialize_packed(by_feast.store, *window, ["post_stats"])
    assert refresh_window(spark, by_spark.store, *window1, ["post_stats"])["post_stats"].mode.startswith("full")
    # a row changing one feature whose stored hash is gone (evicted, deleted by hand): written whole
    victim = int(day2.loc[next(i for i in one if not same[i]), POST_ID])
    evicted = EntityKeyProto(join_keys=[POST_ID], entity_values=[ValueProto(int64_val=victim)])
    gone = serialize_entity_key(evicted, 3) + by_spark.store.project.encode()
    assert _client(redis_server.url, BULK_DB).delete(gone) == 1
    done = refresh_window(spark, by_spark.store, *window2, ["post_stats"])["post_stats"]

    assert done.mode == "incremental"
    assert (done.rows, done.written, done.unchanged) == (len(day2), int((~same).sum()), int(same.sum()))
    assert 0 < done.changed_fraction < 1
    # Feast's twin rewrote every row with day 2's time; ours kept the unchanged rows' (by design:
    # their values are what the store holds). Every feature field is Feast's, byte for byte.
    feast, ours = _contents(redis_server.url, FEAST_DB), _contents(redis_server.url, BULK_DB)
    ours = {k: v for k, v in ours.items() if not k.endswith(MARKER)}
    assert feast.keys() == ours.keys()
    hashes = [k for k, (kind, _, _) in feast.items() if kind == b"hash"]
    assert len(hashes) == len(day2)
    for key in hashes:
        theirs, mine = feast[key][1], ours[key][1]
        assert theirs.keys() == mine.keys()
        assert {f: v for f, v in theirs.items() if not f.startswith(b"_ts:")} == \
            {f: v for f, v in mine.items() if not f.startswith(b"_ts:")}
    assert sum(feast[k] != ours[k] for k in hashes) == int(same.sum())  # only the unchanged rows' times
    posts = day2[POST_ID].tolist()
    assert _values(by_spark, posts) == _values(by_feast, posts)


def test_a_flushed_store_gets_a_full_refresh(spark, redis_server, tmp_path):
    """The marker lives in the store it describes: flushed with it, the next refresh is full."""
    by_feast, by_spark = _twin_repos(tmp_path, redis_server.url, sizes=SampleSizes(posts=30, authors=6,
                                                                                   viewers=4, pairs=20))
    refresh_window(spark, by_spark.store, *FULL_WINDOW, ["post_stats"])
    _client(redis_server.url, BULK_DB).flushdb()
    again = refresh_window(spark, by_spark.store, *FULL_WINDOW, ["post_stats"])["post_stats"]
    assert again.mode.startswith("full: no earlier refresh")
    assert again.written == by_spark.frames["post_stats"][POST_ID].nunique()
    posts = by_spark.frames["post_stats"][POST_ID].unique().tolist()
    materialize_packed(by_feast.store, *FULL_WINDOW, ["post_stats"])
    assert _values(by_spark, posts) == _values(by_feast, posts)
