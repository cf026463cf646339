"""Stream entries (landing lines of users, follows, blocks and posts) as the fan-out worker's events
(candidate_gen/events.py), and the landing lines the live entry points put on the stream.

The stream carries landing lines so that the archiver lands exactly what was said. The worker needs
only a few fields of each, read here. Ids go through `data.ids.to_id`, as ingestion maps them, so a
team's string ids name the same accounts and posts in the feed caches as in the lake. Ingestion
stays the judge of every line (it quarantines with a reason). A line this reader cannot act on is
not applied and is counted with its reason: the dead-letter count of the fan-out consumer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from data import columns as c
from data.contracts import BLOCKS, FOLLOWS, POSTS, USERS
from data.days import iso_ms
from data.ids import BadId, to_id
from data.stream.entries import Entry, Event

FANOUT_LOGS = (USERS.name, FOLLOWS.name, BLOCKS.name, POSTS.name)  # what the fan-out worker acts on


class Unreadable(ValueError):
    """A line the fan-out worker cannot act on; its message is the reason counted."""


@dataclass
class Converted:
    rows: list[tuple[int, str, int, int, int]] = field(default_factory=list)  # (ts_ms, kind, a, b, x)
    ignored: int = 0  # entries of logs the worker does not act on (engagements, impressions)
    unreadable: list[tuple[Entry, str]] = field(default_factory=list)  # with the reason


def _ms(value) -> int:
    if not isinstance(value, str):
        raise Unreadable("bad_type:timestamp")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Unreadable("bad_type:timestamp") from exc
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def _id(row: dict, column: str) -> int:
    if row.get(column) is None:
        raise Unreadable(f"missing_required:{column}")
    try:
        return to_id(row[column])
    except BadId as exc:
        raise Unreadable(f"bad_type:{column}") from exc


def to_row(log: str, line: str) -> tuple[int, str, int, int, int]:
    """One landing line of `log` -> the worker's (ts_ms, kind, a, b, x); Unreadable with a reason."""
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise Unreadable("malformed_json") from exc
    if not isinstance(row, dict):
        raise Unreadable("malformed_json")
    if log == USERS.name:
        private = row.get(c.IS_PRIVATE)
        if not isinstance(private, bool):
            raise Unreadable(f"bad_type:{c.IS_PRIVATE}")
        return _ms(row.get(c.UPDATED_AT)), "user", _id(row, c.USER_ID), 0, int(private)
    if log in (FOLLOWS.name, BLOCKS.name):
        contract = FOLLOWS if log == FOLLOWS.name else BLOCKS
        actor, target = (c.FOLLOWER_ID, c.FOLLOWEE_ID) if log == FOLLOWS.name else (c.BLOCKER_ID, c.BLOCKED_ID)
        action = row.get(c.ACTION)
        if action not in contract.enums[c.ACTION]:
            raise Unreadable(f"bad_enum:{c.ACTION}")
        return _ms(row.get(c.TS)), action, _id(row, actor), _id(row, target), 0
    # posts: published, or deleted (a line with deleted_at)
    created = _ms(row.get(c.CREATED_AT))
    post, author = _id(row, c.POST_ID), _id(row, c.AUTHOR_ID)
    if row.get(c.DELETED_AT) is not None:
        return _ms(row[c.DELETED_AT]), "delete", post, author, created
    return created, "post", post, author, created


def convert(entries: list[Entry]) -> Converted:
    out = Converted()
    for entry in entries:
        if entry.log not in FANOUT_LOGS:
            out.ignored += 1
            continue
        try:
            out.rows.append(to_row(entry.log, entry.line))
        except Unreadable as exc:
            out.unreadable.append((entry, str(exc)))
    return out


# --- what the live entry points say, as landing lines ------------------------------------------
def post_event(post_id: int, author_id: int, created_ms: int, deleted_ms: int | None = None) -> Event:
    line = {c.POST_ID: post_id, c.AUTHOR_ID: author_id, c.CREATED_AT: iso_ms(created_ms),
            c.MEDIA_TYPE: "photo", c.HASHTAGS: [], c.CAPTION: None,
            c.DELETED_AT: None if deleted_ms is None else iso_ms(deleted_ms)}
    return Event(POSTS.name, json.dumps(line), str(post_id))


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
