"""Landing lines of what a live producer says (a post or story published or deleted, a graph change), as
stream events keyed by their entity: the candidate CLI and the live mode's simulated users put
them on the stream; the archiver lands them as any export's lines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from data import columns as c
from data.contracts import BLOCKS, FOLLOWS, POSTS, STORIES
from data.days import iso_ms
from data.stream.entries import Event


def post_event(post_id: int, author_id: int, created_ms: int, deleted_ms: int | None = None,
               hashtags: Sequence[str] = ()) -> Event:
    line = {c.POST_ID: post_id, c.AUTHOR_ID: author_id, c.CREATED_AT: iso_ms(created_ms),
            c.MEDIA_TYPE: "photo", c.HASHTAGS: list(hashtags), c.CAPTION: None,
            c.DELETED_AT: None if deleted_ms is None else iso_ms(deleted_ms)}
    return Event(POSTS.name, json.dumps(line), str(post_id))


def story_event(story_id: int, author_id: int, created_ms: int, deleted_ms: int | None = None,
                media_type: str = "photo") -> Event:
    """A story published (live until created + 24 h) or deleted, keyed by the story: its two lines
    keep their order."""
    line = {c.STORY_ID: story_id, c.AUTHOR_ID: author_id, c.CREATED_AT: iso_ms(created_ms),
            c.MEDIA_TYPE: media_type, c.DELETED_AT: None if deleted_ms is None else iso_ms(deleted_ms)}
    return Event(STORIES.name, json.dumps(line), str(story_id))


def graph_event(action: str, actor: int, target: int, ts_ms: int) -> Event:
    """A follow/unfollow/approve (follows log) or block/unblock/mute/unmute (blocks log), keyed by the
    pair so that a pair's changes keep their order on the stream."""
    if action in FOLLOWS.enums[c.ACTION]:
        line = {c.FOLLOWER_ID: actor, c.FOLLOWEE_ID: target, c.ACTION: action, c.TS: iso_ms(ts_ms)}
        return Event(FOLLOWS.name, json.dumps(line), f"{actor}:{target}")
    if action in BLOCKS.enums[c.ACTION]:
        line = {c.BLOCKER_ID: actor, c.BLOCKED_ID: target, c.ACTION: action, c.TS: iso_ms(ts_ms)}
        return Event(BLOCKS.name, json.dumps(line), f"{actor}:{target}")
    raise ValueError(f"unknown graph action {action!r}: one of {FOLLOWS.enums[c.ACTION] + BLOCKS.enums[c.ACTION]}")
