"""The world's rows as landing-log lines (one JSON object per line, in contract column order)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data.columns import MEDIA_TYPES, STORY_MEDIA_TYPES, SURFACES
from data.world.content import NEVER, Posts
from data.world.graph import COUNTRY_CODES, GraphEvents, Users
from data.world.landing import encode, json_bool, json_enum, json_int, json_str, json_ts, nullable
from data.world.policy import MODEL_VERSION
from data.world.realise import ENG_CODE, ENGAGEMENT_TYPES, IMPRESSION_SOURCES, Engagements, Impressions


def impression_lines(imp: Impressions) -> pa.Array:
    return encode(
        "impressions",
        {
            "request_id": json_str(imp.request_id),
            "viewer_id": json_int(imp.viewer),
            "post_id": json_int(imp.post),
            "position": json_int(imp.position),
            "surface": json_enum(imp.surface, SURFACES),
            "source": json_enum(imp.source, IMPRESSION_SOURCES),
            "ts": json_ts(imp.ts),
            "model_version": f'"{MODEL_VERSION}"',
            "score": "null",
            "features": "null",
            "propensity": "null",  # the logging policy is not a randomised one
            "experiment": "null",  # nor is it split into arms
            "arm": "null",
        },
    )


def engagement_lines(imp: Impressions, eng: Engagements) -> pa.Array:
    e_i = eng.row
    is_dwell = eng.type == ENG_CODE["dwell"]
    value_text = pc.binary_join_element_wise(json_int(eng.value), ".0", "")  # ms, as float
    return encode(
        "engagements",
        {
            "event_id": json_str(eng.event_id),
            "viewer_id": json_int(imp.viewer[e_i]),
            "post_id": json_int(imp.post[e_i]),
            "author_id": json_int(imp.author[e_i]),
            "type": json_enum(eng.type, ENGAGEMENT_TYPES),
            "value": nullable(value_text, ~is_dwell),
            "ts": json_ts(eng.ts),
            "surface": json_enum(imp.surface[e_i], SURFACES),
            "request_id": json_str(imp.request_id.take(pa.array(e_i, pa.int64()))),
        },
    )


def user_lines(
    users: Users,
    is_verified: np.ndarray,
    d: int,
    day_start: int,
    day_end: int,
    verified_now: np.ndarray,
    verified_ts: np.ndarray,
) -> pa.Array:
    """Accounts created on day `d` (all accounts so far on day 0), then an update row per account
    verified today (`is_verified` is the state before today's verifications)."""
    created = users.created_ms
    rows = np.flatnonzero(((created >= day_start) | (d == 0)) & (created < day_end))
    rows = rows[rows > 0]
    updated = created[rows].copy()
    verified = is_verified[rows]
    ids = np.concatenate([rows, verified_now])
    return encode(
        "users",
        {
            "user_id": json_int(ids),
            "created_at": json_ts(created[ids]),
            "updated_at": json_ts(np.concatenate([updated, verified_ts])),
            "is_private": json_bool(users.is_private[ids]),
            "is_verified": json_bool(np.concatenate([verified, np.ones(len(verified_now), bool)])),
            "country": nullable(
                json_enum(np.maximum(users.country[ids], 0), COUNTRY_CODES),
                users.country[ids] < 0,
            ),
        },
    )


def post_lines(
    posts: Posts, hashtags: pa.Array, captions: pa.Array, d: int, day_start: int, day_end: int
) -> pa.Array:
    """Posts created on day `d` (all posts so far on day 0), then a row per post deleted that day.
    `hashtags` / `captions` are the posts' JSON texts as Arrow strings, indexed by post id."""
    p = posts
    lo = -np.inf if d == 0 else day_start
    created = np.flatnonzero((p.created_ms >= lo) & (p.created_ms < day_end))
    created = created[created > 0]
    deleted = np.flatnonzero(
        (p.deleted_ms >= lo) & (p.deleted_ms < day_end) & (p.deleted_ms != NEVER)
    )
    ids = np.concatenate([created, deleted])
    is_del = np.concatenate([np.zeros(len(created), bool), np.ones(len(deleted), bool)])
    take = pa.array(ids, pa.int64())
    return encode(
        "posts",
        {
            "post_id": json_int(ids),
            "author_id": json_int(p.author[ids]),
            "created_at": json_ts(p.created_ms[ids]),
            "media_type": json_enum(p.media[ids], MEDIA_TYPES),
            "hashtags": hashtags.take(take),
            "caption": captions.take(take),
            "deleted_at": json_ts(np.where(is_del, p.deleted_ms[ids], 0), null=~is_del),
        },
    )


def story_lines(
    story_id: np.ndarray,
    author: np.ndarray,
    created_ms: np.ndarray,
    media: np.ndarray,
    deleted_ms: np.ndarray,
) -> pa.Array:
    """Stories as lines: a creation row where `deleted_ms` < 0, else the deletion row (which repeats
    the creation's fields). `media` indexes STORY_MEDIA_TYPES."""
    is_del = np.asarray(deleted_ms) >= 0
    return encode(
        "stories",
        {
            "story_id": json_int(story_id),
            "author_id": json_int(author),
            "created_at": json_ts(created_ms),
            "media_type": json_enum(media, STORY_MEDIA_TYPES),
            "deleted_at": json_ts(np.where(is_del, deleted_ms, 0), null=~is_del),
        },
    )


def post_label_lines(post_id: np.ndarray, score: np.ndarray, ts_ms: np.ndarray) -> pa.Array:
    """The moderation classifier's borderline labels as lines: its score rounded to 4 decimals."""
    score_text = pc.cast(pa.array(np.round(np.asarray(score, dtype=np.float64), 4)), pa.string())
    return encode(
        "post_labels",
        {
            "post_id": json_int(post_id),
            "label": '"borderline"',
            "score": score_text,
            "ts": json_ts(ts_ms),
        },
    )


def graph_lines(log: str, ev: GraphEvents, actions: tuple[str, ...]) -> pa.Array:
    """Follow or block events as `log` ("follows" or "blocks") lines."""
    a, b = ("follower_id", "followee_id") if log == "follows" else ("blocker_id", "blocked_id")
    return encode(
        log,
        {
            a: json_int(ev.src),
            b: json_int(ev.dst),
            "action": json_enum(ev.action, actions),
            "ts": json_ts(ev.ts),
        },
    )
