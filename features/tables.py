"""The feature tables: names, entity keys and features, shared by the Spark jobs that write them,
the Feast repo that serves them and the readers that hydrate them.

Every feature is a Float32 (counts, rates, flags 0/1): one numeric dtype keeps the online vectors
packed and the model input a single float32 matrix. A table's rows for day D carry
`event_timestamp` = the end of D and use only events before it (point-in-time correct).
"""

from __future__ import annotations

from dataclasses import dataclass

from data import columns as c

EVENT_TIMESTAMP = "event_timestamp"
# Engagement groups counted per window; hide and report are one "negative" signal.
COUNTED_TYPES = ("like", "comment", "share", "save", "profile_visit", "dwell", "negative")
WINDOWS_DAYS = (1, 7, 28)
# Weights of the time-decayed relationship score (RealGraph-style), per engagement type.
DECAY_WEIGHTS = {
    "like": 1.0, "comment": 3.0, "share": 4.0, "save": 3.0, "profile_visit": 1.0,
    "dwell": 0.5, "hide": -3.0, "report": -10.0,
}
DECAY_HALF_LIFE_DAYS = 7.0
NO_INTERACTION_DAYS = 999.0  # days_since_last_interaction of a pair that never interacted
# Hashtags are feature-hashed into TAG_BUCKETS buckets: crc32(lowercased UTF-8 tag) mod TAG_BUCKETS.
# A fixed hash is the same basis in every daily snapshot and in Spark and Python alike (no fitted
# vocabulary to drift). The `request_features` on-demand view repeats 64 as a literal.
TAG_BUCKETS = 64


@dataclass(frozen=True)
class FeatureTable:
    name: str  # lake/features/<name>/dt=<day>/, and the Feast feature view's name
    entities: tuple[str, ...]  # join keys
    features: tuple[str, ...]  # Float32 features, in the order the online vectors pack them
    ttl_days: int  # how long a snapshot row stays valid for Feast
    description: str = ""
    # False: a row's event time is the end of its snapshot day. True: the row describes content
    # fixed when the entity was created (a post's hashtags), so its event time is the creation
    # time: a request minutes after a post was published already sees it, point-in-time correct.
    stamped_at_creation: bool = False

    @property
    def materialize_days(self) -> int:
        """How far back one day's materialization reaches: a creation-stamped snapshot holds
        rows of up to ttl_days ago, a daily snapshot only rows of its own day."""
        return self.ttl_days if self.stamped_at_creation else 1

    @property
    def columns(self) -> list[str]:
        return [*self.entities, *self.features, EVENT_TIMESTAMP]


RELATIONSHIP = FeatureTable(
    name="viewer_author",
    entities=(c.VIEWER_ID, c.AUTHOR_ID),
    features=(
        *(f"{t}_{w}d" for t in COUNTED_TYPES for w in WINDOWS_DAYS),
        "engagement_score_decayed",
        "days_since_last_interaction",
        "is_following",
        "is_followed_by",
        "is_mutual",
        "follow_age_days",
        "engagement_share",
        "author_engaged_viewer_28d",
    ),
    ttl_days=3,
    description="Relationship strength of a viewer towards an author: every pair with a follow "
    "edge or an interaction in the last 28 days.",
)

AUTHOR = FeatureTable(
    name="author",
    entities=(c.AUTHOR_ID,),
    features=(
        "follower_count",
        "followee_count",
        "posts_per_day_28d",
        "impressions_28d",
        "like_rate",
        "comment_rate",
        "share_rate",
        "save_rate",
        "negative_rate",
        "mean_dwell_ms",
        "is_celebrity",
        "is_private",
        "is_verified",
    ),
    ttl_days=3,
    description="Author reach and how their posts are received (rates smoothed toward the "
    "global rate).",
)

POST = FeatureTable(
    name="post",
    entities=(c.POST_ID,),
    features=(
        "impressions",
        "likes",
        "comments",
        "shares",
        "saves",
        "negatives",
        "like_rate",
        "comment_rate",
        "share_rate",
        "save_rate",
        "negative_rate",
        "velocity",
        "is_video",
        "is_carousel",
        "hashtag_count",
        "age_hours",
        "created_at_s",
    ),
    ttl_days=3,
    description="Posts of the last 7 days: engagement so far, Bayesian-smoothed toward the "
    "author's rates, and velocity (last 6 h vs the 18 h before).",
)

VIEWER = FeatureTable(
    name="viewer",
    entities=(c.VIEWER_ID,),
    features=(
        "requests_7d",
        "impressions_7d",
        "engagements_7d",
        "engagement_rate_7d",
        "engagement_rate_photo",
        "engagement_rate_video",
        "engagement_rate_carousel",
        "explore_share",
        "account_age_days",
    ),
    ttl_days=3,
    description="How active a viewer is, what media they engage with, Home vs Explore usage.",
)

POSTED_AT_S = "posted_at_s"  # post_tags' publication time (epoch seconds, float32)

POST_TAGS = FeatureTable(
    name="post_tags",
    entities=(c.POST_ID,),
    features=(*(f"post_tag_{k:02d}" for k in range(TAG_BUCKETS)), POSTED_AT_S),
    ttl_days=7,  # the `post` table's window: a post's content rows live as long as it is a candidate
    description="What a post is, known from the moment it is published: hashtag bucket counts, "
    "L2-normalised (all zeros without hashtags), and its creation time. Rows are stamped with "
    "the creation time (posts of the last 7 days).",
    stamped_at_creation=True,
)

VIEWER_TAGS = FeatureTable(
    name="viewer_tags",
    entities=(c.VIEWER_ID,),
    features=tuple(f"viewer_tag_{k:02d}" for k in range(TAG_BUCKETS)),
    ttl_days=3,
    description="A viewer's hashtag-bucket interests: engaged posts' bucket vectors weighted by "
    "engagement type over 28 days, negatives clipped, L2-normalised (no row without positive mass).",
)

# Viewer top hashtags are strings: kept in their own table, not in the numeric ranker service.
VIEWER_TOPICS = "viewer_topics"

TABLES: dict[str, FeatureTable] = {
    t.name: t for t in (RELATIONSHIP, AUTHOR, POST, VIEWER, POST_TAGS, VIEWER_TAGS)
}
