"""Stream entries (landing lines of users, follows, blocks and posts) as the fan-out worker's events
(candidate_gen/events.py); what the live entry points put on the stream is data/stream/said.py.

The stream carries landing lines so that the archiver lands exactly what was said. Each is judged
by ingestion's own line rules (data/ingest/line_rules.py) against its arrival day, the day it lands
under: ids mapped as ingestion maps them, so a team's string ids name the same accounts and posts
in the feed caches as in the lake, and a line ingestion would quarantine is not applied but counted
with ingestion's reason: the dead-letter count of the fan-out consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data import columns as c
from data.contracts import BLOCKS, CONTRACTS, FOLLOWS, POSTS, USERS
from data.ingest.line_rules import LineRules
from data.stream.entries import Entry
from data.vocabulary import load_vocabulary

FANOUT_LOGS = (USERS.name, FOLLOWS.name, BLOCKS.name, POSTS.name)  # what the fan-out worker acts on


class Unreadable(ValueError):
    """A line the fan-out worker cannot act on; its message is the reason counted."""


@dataclass
class Converted:
    rows: list[tuple[int, str, int, int, int]] = field(default_factory=list)  # (ts_ms, kind, a, b, x)
    ignored: int = 0  # entries of logs the worker does not act on (engagements, impressions)
    unreadable: list[tuple[Entry, str]] = field(default_factory=list)  # with the reason


_RULES = {log: LineRules(CONTRACTS[log], load_vocabulary()) for log in FANOUT_LOGS}


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


def convert(entries: list[Entry]) -> Converted:
    out = Converted()
    for entry in entries:
        if entry.log not in FANOUT_LOGS:
            out.ignored += 1
            continue
        try:
            out.rows.append(to_row(entry.log, entry.line, entry.day))
        except Unreadable as exc:
            out.unreadable.append((entry, str(exc)))
    return out
