"""Build or refresh the search index from the lake's posts partitions (docs/log_contracts.md §2.2).

Each landing day's partition is applied once: its creations upserted, then its deletions removed
(a deletion is a second row of the post with `deleted_at` set, often on a later day). A day is
applied again only when its files changed (a day ingested again when more files landed in it):
the index remembers each day's fingerprint (its Parquet files' names and sizes). Idempotent: a
refresh of an unchanged lake writes nothing, a refresh after a crash redoes what was not recorded,
and a post once deleted is never indexed again, whatever order the days come in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from candidate_gen.lake_reader import to_ms
from candidate_gen.search.post_text_index import PostText, PostTextIndex
from data import columns as c
from data import lake

POSTS = "posts"
COLUMNS = [c.POST_ID, c.AUTHOR_ID, c.CREATED_AT, c.HASHTAGS, c.CAPTION, c.DELETED_AT]


@dataclass
class RefreshStats:
    days_applied: list[str] = field(default_factory=list)
    days_unchanged: int = 0
    upserted: int = 0  # rows written (new posts, or a changed text)
    deleted: int = 0  # posts taken out of the index
    indexed: int = 0  # posts in the index afterwards

    def as_metadata(self) -> dict:
        return {"days_applied": len(self.days_applied), "days_unchanged": self.days_unchanged,
                "upserted": self.upserted, "deleted": self.deleted, "indexed": self.indexed}


def fingerprint(lake_dir: Path, day: str) -> str:
    folder = lake.partition_dir(lake_dir, POSTS, day)
    return ";".join(f"{f.name}:{f.stat().st_size}" for f in sorted(folder.glob("*.parquet")))


def refresh_from_lake(index: PostTextIndex, lake_dir: Path, through: str | None = None) -> RefreshStats:
    """Apply every written posts partition up to `through` (None: all) not applied as it is now."""
    stats = RefreshStats()
    done = dict(index.db.execute("SELECT dt, fingerprint FROM lake_days").fetchall())
    for day in lake.partition_days(lake_dir, POSTS):
        if through is not None and day > through:
            break
        mark = fingerprint(lake_dir, day)
        if done.get(day) == mark:
            stats.days_unchanged += 1
            continue
        rows = lake.read_partitions(lake_dir, POSTS, [day], COLUMNS)
        up, gone = apply_rows(index, rows)
        stats.upserted += up
        stats.deleted += gone
        with index.transaction() as db:
            db.execute("INSERT OR REPLACE INTO lake_days(dt, fingerprint) VALUES (?, ?)", (day, mark))
        stats.days_applied.append(day)
    if stats.days_applied:
        index.optimize()
    stats.indexed = index.count()
    return stats


def apply_rows(index: PostTextIndex, rows: pd.DataFrame) -> tuple[int, int]:
    """Posts rows (the lake's columns) into the index: creations, then deletions. Returns (rows
    upserted, posts deleted)."""
    if rows.empty:
        return 0, 0
    rows = rows.assign(_created_ms=to_ms(rows[c.CREATED_AT])).sort_values(["_created_ms", c.POST_ID], kind="stable")
    deleted = rows[c.DELETED_AT].notna().to_numpy()
    created_ms = rows["_created_ms"].to_numpy()  # indexed in creation order: the newest get the highest doc
    made = rows[~deleted]
    up = index.upsert(
        PostText(int(p), int(a), int(t), list(h) if h is not None else None, cap if isinstance(cap, str) else None)
        for p, a, t, h, cap in zip(made[c.POST_ID], made[c.AUTHOR_ID], created_ms[~deleted], made[c.HASHTAGS],
                                   made[c.CAPTION], strict=True))
    gone = rows[deleted]
    removed = index.delete(zip(gone[c.POST_ID].astype("int64").tolist(),
                               to_ms(gone[c.DELETED_AT]).tolist(), strict=True)) if len(gone) else 0
    return up, removed
