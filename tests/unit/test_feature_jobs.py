"""The Spark feature jobs on a hand-built world: every value worked out by hand, and no event
dated after the snapshot's end ever counts."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from features.jobs import author, post, relationship, viewer
from features.jobs.inputs import MissingInputError
from features.storage import write_feature_partition
from features.tables import AUTHOR
from pipelines.defs.ingest.ingest import ingest_partition
from tests.builders import DAY, PREV_DAY, feature_world

pytestmark = pytest.mark.spark
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
    half = lambda age_days: 2 ** (-age_days / 7)  # noqa: E731
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
    snapshot_ts = pairs[(1, 2)].event_timestamp.replace(tzinfo=timezone.utc)
    assert snapshot_ts == datetime(2026, 10, 3, tzinfo=timezone.utc)


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
