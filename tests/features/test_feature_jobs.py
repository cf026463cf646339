"""The Spark feature jobs on a hand-built world: every value worked out by hand, and no event
dated after the snapshot's end ever counts."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from pyspark.sql import functions as F

from data.ingest.partition import ingest_partition
from features.jobs import author, post, post_tags, relationship, viewer, viewer_tags
from features.jobs.inputs import MissingInputError
from features.jobs.tags import spark_tag_bucket
from features.storage import write_feature_partition
from features.tables import AUTHOR, POST_TAGS, TAG_BUCKETS, VIEWER_TAGS
from features.tags import tag_bucket, tag_vector
from tests.builders import DAY, NEXT_DAY, PREV_DAY, engagement, feature_world, user, write_jsonl
from tests.builders import post as post_row

LOGS = ("users", "posts", "follows", "blocks", "engagements", "impressions")


@pytest.fixture(scope="module")
def lake_dir(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    feature_world(root / "landing")
    for day in (PREV_DAY, DAY):
        for log in LOGS:
            report = ingest_partition(spark, log, day, root / "landing", root / "lake")
            assert report.rows_quarantined == 0
    return root / "lake"


def rows_by(frame, *keys):
    return {tuple(getattr(r, k) for k in keys): r for r in frame.collect()}


def test_relationship_features(spark, lake_dir):
    pairs = rows_by(relationship.compute(spark, lake_dir, DAY), "viewer_id", "author_id")

    p = pairs[(1, 2)]
    assert (p.like_1d, p.like_7d, p.comment_1d, p.dwell_1d, p.negative_28d) == (1, 2, 1, 1, 0)
    assert (p.is_following, p.is_followed_by, p.is_mutual) == (1, 1, 1)
    assert p.author_engaged_viewer_28d == 1  # author 2 liked viewer 1's post
    assert p.engagement_share == pytest.approx(4 / 5)  # 4 of viewer 1's 5 positive events
    assert p.days_since_last_interaction == pytest.approx(11 / 24, abs=1e-5)  # comment at 13:00

    def half(age_days):
        return 2 ** (-age_days / 7)

    expected = half(1 + 9 / 24) + half(12 / 24) + 3 * half(11 / 24) + 0.5 * half(11 / 24 + 59 / 1440)
    assert p.engagement_score_decayed == pytest.approx(expected, rel=1e-5)
    assert p.follow_age_days == pytest.approx(1 + 16 / 24, abs=1e-5)  # since PREV_DAY 08:00

    unfollowed = pairs[(1, 3)]
    assert (unfollowed.is_following, unfollowed.like_1d) == (0, 1)
    assert (3, 4) not in pairs  # a follow request a private account never approved
    approved = pairs[(5, 4)]
    assert approved.is_following == 1 and approved.follow_age_days == pytest.approx(1 + 13 / 24, abs=1e-5)
    assert approved.days_since_last_interaction == 999.0


def test_the_previous_snapshot_sees_only_its_own_past(spark, lake_dir):
    pairs = rows_by(relationship.compute(spark, lake_dir, PREV_DAY), "viewer_id", "author_id")
    assert pairs[(1, 2)].like_7d == 1 and pairs[(1, 2)].comment_28d == 0
    assert pairs[(1, 3)].is_following == 1  # the unfollow happens on DAY
    snapshot_ts = pairs[(1, 2)].event_timestamp.replace(tzinfo=UTC)
    assert snapshot_ts == datetime(2026, 10, 3, tzinfo=UTC)


def test_author_post_and_viewer_features(spark, lake_dir):
    authors = rows_by(author.compute(spark, lake_dir, DAY), "author_id")
    assert (authors[(2,)].follower_count, authors[(2,)].followee_count) == (1, 1)
    assert authors[(4,)].follower_count == 1 and authors[(4,)].is_private == 1
    assert authors[(2,)].impressions_28d == 3 and authors[(2,)].mean_dwell_ms == 5000.0
    global_like_rate = 4 / 7  # 4 likes over 7 impressions in the window
    author_rate = (2 + 100 * global_like_rate) / (3 + 100)
    assert authors[(2,)].like_rate == pytest.approx(author_rate, rel=1e-5)

    write_feature_partition(author.compute(spark, lake_dir, DAY), lake_dir, AUTHOR, DAY)
    posts = rows_by(post.compute(spark, lake_dir, DAY), "post_id")
    p100 = posts[(100,)]
    assert (p100.impressions, p100.likes, p100.comments) == (3, 2, 1)
    assert p100.like_rate == pytest.approx((2 + 20 * author_rate) / (3 + 20), rel=1e-5)
    assert p100.age_hours == pytest.approx(38.0, abs=1e-3)
    assert posts[(101,)].is_video == 1 and posts[(101,)].hashtag_count == 1

    viewers = rows_by(viewer.compute(spark, lake_dir, DAY), "viewer_id")
    v1 = viewers[(1,)]
    assert (v1.requests_7d, v1.impressions_7d, v1.engagements_7d) == (2, 3, 4)  # likes + comment
    assert viewers[(2,)].explore_share == 1.0
    assert math.isclose(v1.engagement_rate_video, 1.0)  # one video impression, one like


def test_a_snapshot_whose_inputs_are_missing_names_them(spark, lake_dir):
    with pytest.raises(MissingInputError, match="lake/engagements/dt=2026-10-05"):
        relationship.compute(spark, lake_dir, "2026-10-05")


# --- hashtag buckets --------------------------------------------------------------------------
def test_spark_and_python_hash_tags_to_the_same_bucket(spark):
    tags = ["food", "Food", "FOOD", "travel", "cars", "insta_cars", "café", "Été", "日本", ""]
    got = spark.createDataFrame([(t,) for t in tags], "tag string").select(
        "tag", spark_tag_bucket(F.col("tag")).alias("bucket")
    ).collect()
    assert {r.tag: r.bucket for r in got} == {t: tag_bucket(t) for t in tags}
    assert tag_bucket("Food") == tag_bucket("food") and 0 <= tag_bucket("travel") < TAG_BUCKETS


@pytest.fixture(scope="module")
def tags_lake(spark, tmp_path_factory):
    """Posts by author 9 with chosen hashtags, engagements of viewers 1-4 on them.

    200: Food, food, travel (two buckets, counts 2 and 1); 201: no hashtags; 202: cars; 203: null
    hashtags. Viewer 1 likes 200 and comments 202; viewer 2 does the same and hides 202; viewer 3
    only reports 200 and likes the tagless 201; viewer 4 dwells on 200 and likes 202 30 minutes
    after DAY ends (lands on DAY: not in DAY's snapshot).
    """
    root = tmp_path_factory.mktemp("tags")
    landing = root / "landing"

    def at(hour):
        return f"{DAY}T{hour:02d}:00:00.000Z"

    write_jsonl(landing, "users", PREV_DAY, [user(u) for u in (1, 2, 3, 4, 9)])
    write_jsonl(landing, "users", DAY, [])
    write_jsonl(landing, "posts", PREV_DAY, [
        post_row(200, 9, hashtags=["Food", "food", "travel"]),
        post_row(201, 9, hashtags=[]),
        post_row(202, 9, hashtags=["cars"]),
        post_row(203, 9, hashtags=None),
    ])
    write_jsonl(landing, "posts", DAY, [])
    noon = at(12)

    def e(eid, viewer, post_id, kind="like", ts=noon, **kw):
        return engagement(eid, viewer=viewer, post_id=post_id, author_id=9, type=kind, ts=ts, **kw)

    write_jsonl(landing, "engagements", PREV_DAY, [])
    write_jsonl(landing, "engagements", DAY, [
        e("a1", 1, 200), e("a2", 1, 202, "comment"),
        e("b1", 2, 200), e("b2", 2, 202, "comment"), e("b3", 2, 202, "hide", at(13)),
        e("c1", 3, 200, "report"), e("c2", 3, 201),
        e("d1", 4, 200, "dwell", value=4000.0), e("d2", 4, 202, ts=f"{NEXT_DAY}T00:30:00.000Z"),
    ])
    for day in (PREV_DAY, DAY):
        for log in ("users", "posts", "engagements"):
            assert ingest_partition(spark, log, day, landing, root / "lake").rows_quarantined == 0
    return root / "lake"


def vector(row, table) -> list[float]:
    """The tag buckets of a row (post_tags also carries posted_at_s)."""
    return [getattr(row, f) for f in table.features if "_tag_" in f]


def test_post_tags_are_normalised_bucket_counts(spark, tags_lake):
    posts = rows_by(post_tags.compute(spark, tags_lake, DAY), "post_id")
    assert set(posts) == {(200,), (201,), (202,), (203,)}
    p200 = vector(posts[(200,)], POST_TAGS)
    food, travel = tag_bucket("food"), tag_bucket("travel")
    assert food != travel  # else the hand-worked values below would not hold
    assert p200[food] == pytest.approx(2 / math.sqrt(5)) and p200[travel] == pytest.approx(1 / math.sqrt(5))
    assert sum(x * x for x in p200) == pytest.approx(1.0, rel=1e-6)
    # bit for bit what the stream feature worker writes when the post is published (float32)
    assert p200 == [float(np.float32(x)) for x in tag_vector(["Food", "food", "travel"])]
    assert vector(posts[(201,)], POST_TAGS) == [0.0] * TAG_BUCKETS  # no hashtags
    assert vector(posts[(203,)], POST_TAGS) == [0.0] * TAG_BUCKETS  # null hashtags
    assert vector(posts[(202,)], POST_TAGS)[tag_bucket("cars")] == 1.0
    # Content is known from publication: rows are stamped with the creation time, not the day's end.
    created = datetime.fromisoformat(f"{PREV_DAY}T10:00:00+00:00")
    assert posts[(200,)].event_timestamp.replace(tzinfo=UTC) == created
    assert posts[(200,)].posted_at_s == float(np.float32(int(created.timestamp())))  # float32, as the worker


def test_viewer_tags_weigh_engagements_and_drop_negative_only_viewers(spark, tags_lake):
    viewers = rows_by(viewer_tags.compute(spark, tags_lake, DAY), "viewer_id")
    p200, p202 = tag_vector(["food", "food", "travel"]), tag_vector(["cars"])

    def expected(weights_200: float, weights_202: float) -> list[float]:
        raw = [max(weights_200 * a + weights_202 * b, 0.0) for a, b in zip(p200, p202)]
        norm = math.sqrt(sum(x * x for x in raw))
        return [x / norm for x in raw]

    v1, v2 = vector(viewers[(1,)], VIEWER_TAGS), vector(viewers[(2,)], VIEWER_TAGS)
    assert v1 == pytest.approx(expected(1.0, 3.0))  # like 1, comment 3
    assert v2 == pytest.approx(expected(1.0, 3.0 - 3.0))  # the hide (-3) cancels the comment
    cars = tag_bucket("cars")
    assert v2[cars] == 0.0 < v1[cars] and v2[tag_bucket("food")] > v1[tag_bucket("food")]
    assert (3,) not in viewers  # a report and a like of a tagless post: no positive mass
    # dwell counts; the like dated after the end of DAY does not (no cars at all)
    assert vector(viewers[(4,)], VIEWER_TAGS) == pytest.approx(expected(0.5, 0.0))
    assert vector(viewers[(4,)], VIEWER_TAGS)[cars] == 0.0
    assert sum(x * x for x in v1) == pytest.approx(1.0, rel=1e-6)


def test_viewer_tags_of_the_previous_day_see_nothing_yet(spark, tags_lake):
    assert viewer_tags.compute(spark, tags_lake, PREV_DAY).count() == 0
