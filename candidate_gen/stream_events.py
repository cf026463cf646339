"""Stream entries (landing lines of users, follows, blocks and posts) as the fan-out worker's events
(candidate_gen/events.py), stories-log lines as stories published or deleted (candidate_gen/stories.py),
and engagements that push an author away as the viewer's fatigue
(candidate_gen/fatigue.py); what the live entry points put on the stream is data/stream/said.py.

The stream carries landing lines so that the archiver lands exactly what was said. Each is judged
by ingestion's own line rules (data/ingest/line_rules.py) against its arrival day, the day it lands
under: ids mapped as ingestion maps them, so a team's string ids name the same accounts and posts
in the feed caches as in the lake, and a line ingestion would quarantine is not applied but counted
with ingestion's reason: the dead-letter count of the fan-out consumer.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

from candidate_gen.fatigue import PushAway
from candidate_gen.stories import StoryChange
from data import columns as c
from data.contracts import BLOCKS, CONTRACTS, ENGAGEMENTS, FOLLOWS, POSTS, STORIES, USERS
from data.ingest.line_rules import LineRules
from data.stream.entries import Entry
from data.vocabulary import load_vocabulary

FANOUT_LOGS = (USERS.name, FOLLOWS.name, BLOCKS.name, POSTS.name)  # what the fan-out worker acts on


class Unreadable(ValueError):
    """A line the fan-out worker cannot act on; its message is the reason counted."""


@dataclass
class Converted:
    rows: list[tuple[int, str, int, int, int]] = field(default_factory=list)  # (ts_ms, kind, a, b, x)
    push_aways: list[PushAway] = field(default_factory=list)
    stories: list[StoryChange] = field(default_factory=list)  # stories published or deleted, in order
    ignored: int = 0  # entries the worker does not act on (impressions, other engagements)
    unreadable: list[tuple[Entry, str]] = field(default_factory=list)  # with the reason


_RULES = {log: LineRules(CONTRACTS[log], load_vocabulary())
          for log in (*FANOUT_LOGS, ENGAGEMENTS.name, STORIES.name)}


def to_row(log: str, line: str, day: str) -> tuple[int, str, int, int, int]:
    """One landing line of `log` arriving on `day` -> the worker's (ts_ms, kind, a, b, x); Unreadable
    with ingestion's reason for a line ingestion would quarantine."""
    checked = _RULES[log].check(line, day)
    if checked.reason is not None:
        raise Unreadable(checked.reason)
    row = dict(zip(CONTRACTS[log].column_names, checked.values, strict=True))
    if log == USERS.name:
        return row[c.UPDATED_AT] // 1000, "user", row[c.USER_ID], 0, int(row[c.IS_PRIVATE])
    if log == FOLLOWS.name:
        return row[c.TS] // 1000, row[c.ACTION], row[c.FOLLOWER_ID], row[c.FOLLOWEE_ID], 0
    if log == BLOCKS.name:
        return row[c.TS] // 1000, row[c.ACTION], row[c.BLOCKER_ID], row[c.BLOCKED_ID], 0
    # posts: published, or deleted (a line with deleted_at)
    created, post, author = row[c.CREATED_AT] // 1000, row[c.POST_ID], row[c.AUTHOR_ID]
    if row[c.DELETED_AT] is not None:
        return row[c.DELETED_AT] // 1000, "delete", post, author, created
    return created, "post", post, author, created


def story_change(line: str, day: str) -> StoryChange:
    """A stories-log line arriving on `day`; Unreadable with ingestion's reason."""
    checked = _RULES[STORIES.name].check(line, day)
    if checked.reason is not None:
        raise Unreadable(checked.reason)
    return StoryChange.of_row(dict(zip(STORIES.column_names, checked.values, strict=True)))


def push_away(line: str, day: str, types: Collection[str]) -> PushAway | None:
    """An engagement line of one of `types` as a push-away; None for any other type (not the fan-out
    worker's: the feature worker counts it); Unreadable for a line of one of `types` that ingestion
    would quarantine. Most engagements are of other types: a line that does not even hold one of
    their names is passed over unparsed (a type spelled with JSON escapes is then missed here, and
    reaches the viewer's fatigue by the daily build from the lake)."""
    if not any(kind in line for kind in types):
        return None
    checked = _RULES[ENGAGEMENTS.name].check(line, day)
    if checked.reason is None:
        row = dict(zip(ENGAGEMENTS.column_names, checked.values, strict=True))
        if row[c.TYPE] not in types:
            return None
        return PushAway(row[c.VIEWER_ID], row[c.AUTHOR_ID], row[c.POST_ID], row[c.TYPE], row[c.TS] // 1000)
    try:  # a line ingestion quarantines: the fan-out worker's to dead-letter only if it is a push-away
        kind = json.loads(line).get(c.TYPE)
    except (ValueError, AttributeError):
        kind = None
    if kind in types:
        raise Unreadable(checked.reason)
    return None


def convert(entries: list[Entry], push_away_types: Collection[str] = ()) -> Converted:
    """`push_away_types`: the engagement types that push an author away ([fatigue] weights)."""
    out = Converted()
    for entry in entries:
        try:
            if entry.log in FANOUT_LOGS:
                out.rows.append(to_row(entry.log, entry.line, entry.day))
                continue
            if entry.log == STORIES.name:
                out.stories.append(story_change(entry.line, entry.day))
                continue
            found = push_away(entry.line, entry.day, push_away_types) if entry.log == ENGAGEMENTS.name else None
            if found is None:
                out.ignored += 1
            else:
                out.push_aways.append(found)
        except Unreadable as exc:
            out.unreadable.append((entry, str(exc)))
    return out
