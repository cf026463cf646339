"""An engagement line off the stream, read into the few fields the stream processor counts.

The line is judged by ingestion's own per-line rules (data/ingest/line_rules.py), which
`POST /v1/events` applies too, against its arrival day (the day it lands under): a line ingestion
would quarantine is refused here with ingestion's reason and dead-lettered. What needs the lake
(unknown users or posts) stays ingestion's to judge.
"""

from __future__ import annotations

from typing import NamedTuple

from data import columns as c
from data.contracts import ENGAGEMENTS
from data.ingest.line_rules import LineRules
from data.vocabulary import Vocabulary

_AT = {name: i for i, name in enumerate(ENGAGEMENTS.column_names)}


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
