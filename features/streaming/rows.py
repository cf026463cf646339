"""An engagement line off the stream, read into the few fields the stream processor counts.

`engagement_row` is the one place a line is judged here, so that it can be swapped for the shared
per-line validator of the engagements contract (ingestion's rules, which `POST /v1/events` applies
too) once that exists; its reasons use the same words (docs/log_contracts.md). Ingestion stays the
judge of what the lake keeps; a line refused here is dead-lettered with its reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import NamedTuple

from data import columns as c
from data.ids import BadId, to_id
from data.vocabulary import Vocabulary


class EngagementRow(NamedTuple):
    viewer_id: int
    post_id: int
    author_id: int
    type: str
    value: float | None
    ts_ms: int  # event time


def _ms(value) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def engagement_row(line: str, vocabulary: Vocabulary) -> EngagementRow | str:
    """One engagements landing line -> its row, or the reason it cannot be counted."""
    try:
        row = json.loads(line)
    except ValueError:
        return "malformed_json"
    if not isinstance(row, dict):
        return "malformed_json"
    for column in (c.EVENT_ID, c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE, c.TS, c.SURFACE):
        if row.get(column) is None:
            return f"missing_required:{column}"
    ids = []
    for column in (c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID):
        try:
            ids.append(to_id(row[column]))
        except BadId:
            return f"bad_type:{column}"
    kind = row[c.TYPE]
    if kind not in vocabulary.engagement_types:
        return f"bad_enum:{c.TYPE}"
    value = row.get(c.VALUE)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"bad_type:{c.VALUE}"
    ts_ms = _ms(row[c.TS])
    if ts_ms is None:
        return f"bad_type:{c.TS}"
    return EngagementRow(*ids, kind, None if value is None else float(value), ts_ms)
