"""Stories in the feed cache: each author's live stories and each viewer's seen ones
(docs/feed_cache_format.md "Stories").

    {u:<author>}:stories    ZSET story id -> created_at ms
    {u:<viewer>}:storyseen  SET  story ids the viewer saw

A story is live while now < created_at + 24 h (data.columns.STORY_TTL_MS), to the millisecond.
Every read asks only for the live range (`queue_live`), and the tray checks each story again at
the moment its answer leaves (`is_live`): that is what keeps an expired story from ever being
served. The TTLs only free memory: an author's key expires a day after its last write, and each
write trims the stories that had expired before the newest one was posted; a viewer's seen set
expires a day after its last view, when every story in it has.

Writes come from the stories log: its lines on the event stream, applied by the fan-out worker
(candidate_gen.stream_fanout) within a poll, and the lake's last day (`load_from_lake`, the daily
asset and a cache rebuilt after a restart). Each is idempotent: a batch applied twice, or a story
written by both, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from candidate_gen.keys import Keys
from candidate_gen.lake_reader import to_ms
from data import columns as c
from data import lake
from data.columns import STORY_TTL_MS
from data.contracts import STORIES
from data.days import day_end_ms, days_before
from features.optional_logs import absent


@dataclass(frozen=True)
class StoryChange:
    """One line of the stories log: a story published (`deleted_ms` None) or deleted."""

    story_id: int
    author_id: int
    created_ms: int
    deleted_ms: int | None = None

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> StoryChange:
        """From a checked stories-log row (data.ingest.line_rules: timestamps in epoch µs)."""
        deleted = row[c.DELETED_AT]
        return cls(row[c.STORY_ID], row[c.AUTHOR_ID], row[c.CREATED_AT] // 1000,
                   None if deleted is None else deleted // 1000)


def is_live(created_ms: int, now_ms: int) -> bool:
    """Live from its creation until exactly 24 h later (the last live millisecond is created + 24 h − 1)."""
    return created_ms <= now_ms < created_ms + STORY_TTL_MS


def apply(client: Any, keys: Keys, changes: Sequence[StoryChange]) -> int:
    """Write `changes` in order (one pipeline; each command in its author's slot). Returns how many."""
    if not changes:
        return 0
    pipe = client.pipeline(transaction=False)
    newest: dict[int, int] = {}
    for ch in changes:
        key = keys.stories(ch.author_id)
        if ch.deleted_ms is not None:
            pipe.zrem(key, ch.story_id)
            continue
        pipe.zadd(key, {ch.story_id: ch.created_ms})
        newest[ch.author_id] = max(newest.get(ch.author_id, ch.created_ms), ch.created_ms)
    for author, created in newest.items():
        key = keys.stories(author)
        # Memory only: the key lives a day past its last write, which is at its newest story's
        # creation give or take the stream's delay. Relative, not PEXPIREAT created + 24 h: the
        # stories' clock may be a replay's (data/clock.py), days behind the server's.
        pipe.pexpire(key, STORY_TTL_MS)
        pipe.zremrangebyscore(key, "-inf", created - STORY_TTL_MS)  # expired before this one was posted
    pipe.execute()
    return len(changes)


def record_seen(client: Any, keys: Keys, viewer_id: int, story_ids: Iterable[int]) -> int:
    """The viewer saw `story_ids`. The set outlives every story it names: each expires within 24 h
    of its creation, which is before the view. Returns how many distinct ids."""
    ids = sorted(set(story_ids))
    if not ids:
        return 0
    pipe = client.pipeline(transaction=False)
    pipe.sadd(keys.stories_seen(viewer_id), *ids)
    pipe.pexpire(keys.stories_seen(viewer_id), STORY_TTL_MS)
    pipe.execute()
    return len(ids)


def queue_live(pipe: Any, keys: Keys, author: int, now_ms: int, limit: int) -> None:
    """Queue a read of the author's newest `limit` live stories, as [(story id, created ms)] newest first."""
    pipe.zrevrangebyscore(keys.stories(author), now_ms, f"({now_ms - STORY_TTL_MS}", start=0, num=limit,
                          withscores=True, score_cast_func=int)


def live_in_lake(lake_dir: Path, day: str) -> pd.DataFrame:
    """story_id, author_id, created_ms of the lake's stories live at the end of `day` and not
    deleted by then (a story posted the day before may have landed on either day)."""
    end = day_end_ms(day)
    frame = lake.read_partitions(lake_dir, STORIES.name, [days_before(day, 1), day],
                                 [c.STORY_ID, c.AUTHOR_ID, c.CREATED_AT, c.DELETED_AT])
    if not len(frame):
        return pd.DataFrame({c.STORY_ID: [], c.AUTHOR_ID: [], "created_ms": []}, dtype="int64")
    created = to_ms(frame[c.CREATED_AT])
    deletions = frame[frame[c.DELETED_AT].notna()]
    deleted = set(deletions.loc[to_ms(deletions[c.DELETED_AT]) <= end, c.STORY_ID].tolist())
    live = frame[c.DELETED_AT].isna() & (created > end - STORY_TTL_MS) & (created <= end)
    out = pd.DataFrame({c.STORY_ID: frame.loc[live, c.STORY_ID], c.AUTHOR_ID: frame.loc[live, c.AUTHOR_ID],
                        "created_ms": created[live]})
    out = out[~out[c.STORY_ID].isin(deleted)].drop_duplicates(c.STORY_ID)
    return out.sort_values(["created_ms", c.STORY_ID], kind="stable").reset_index(drop=True).astype("int64")


def load_from_lake(lake_dir: Path, day: str, client: Any, keys: Keys, batch: int = 5_000) -> dict:
    """The stories live at the end of `day` into the cache (the daily asset; a cache rebuilt after
    a restart): what the stream already wrote is written the same again. A story deleted since is
    not re-added; one that expired since is written and never read (a read asks for the live range)."""
    if absent(lake_dir, STORIES.name):
        return {"day": day, "stories": 0, "authors": 0, "absent": "no stories log in the lake"}
    live = live_in_lake(lake_dir, day)
    rows = list(zip(live[c.STORY_ID].tolist(), live[c.AUTHOR_ID].tolist(), live["created_ms"].tolist(), strict=True))
    for i in range(0, len(rows), batch):
        apply(client, keys, [StoryChange(*row) for row in rows[i:i + batch]])
    return {"day": day, "stories": len(rows), "authors": int(live[c.AUTHOR_ID].nunique())}
