"""An engagement line off the stream, read into the few fields the stream processor counts.

The line is judged by ingestion's own per-line rules (data/ingest/line_rules.py), which
`POST /v1/events` applies too, against its arrival day (the day it lands under): a line ingestion
would quarantine is refused here with ingestion's reason and dead-lettered. What needs the lake
(unknown users or posts) stays ingestion's to judge.
"""

from __future__ import annotations

from typing import NamedTuple

from data import columns as c
from data.contracts import ENGAGEMENTS, POSTS
from data.ingest.line_rules import LineRules
from data.vocabulary import Vocabulary
from features.streaming.spec import tags_value

_AT = {name: i for i, name in enumerate(ENGAGEMENTS.column_names)}
_POST_AT = {name: i for i, name in enumerate(POSTS.column_names)}


class EngagementRow(NamedTuple):
    viewer_id: int
    post_id: int
    author_id: int
    type: str
    value: float | None
    ts_ms: int  # event time


def engagement_rules(vocabulary: Vocabulary) -> LineRules:
    return LineRules(ENGAGEMENTS, vocabulary)


def engagement_row(rules: LineRules, line: str, day: str) -> EngagementRow | str:
    """One engagements landing line arriving on `day` -> its row, or ingestion's reason to refuse it."""
    checked = rules.check(line, day)
    if checked.reason is not None:
        return checked.reason
    v = checked.values
    return EngagementRow(v[_AT[c.VIEWER_ID]], v[_AT[c.POST_ID]], v[_AT[c.AUTHOR_ID]], v[_AT[c.TYPE]],
                         v[_AT[c.VALUE]], v[_AT[c.TS]] // 1000)


class PostChange(NamedTuple):
    post_id: int
    author_id: int
    tags: str  # as post_tags_key holds them (spec.tags_value); "" for none
    deleted: bool
    created_ms: int = 0  # publication time
    hashtags: tuple[str, ...] = ()  # as the post carries them (the post_tags row's buckets)


def post_rules(vocabulary: Vocabulary) -> LineRules:
    return LineRules(POSTS, vocabulary)


def post_change(rules: LineRules, line: str, day: str) -> PostChange | None:
    """A posts landing line (a publish, or a deletion) -> what trending and the post's `post_tags` row
    need of it; None for a line ingestion would refuse (the fan-out worker, the posts' consumer,
    dead-letters it)."""
    checked = rules.check(line, day)
    if checked.reason is not None:
        return None
    v = checked.values
    hashtags = tuple(v[_POST_AT[c.HASHTAGS]] or ())
    return PostChange(v[_POST_AT[c.POST_ID]], v[_POST_AT[c.AUTHOR_ID]], tags_value(hashtags),
                      v[_POST_AT[c.DELETED_AT]] is not None, v[_POST_AT[c.CREATED_AT]] // 1000, hashtags)
