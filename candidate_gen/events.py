"""The event stream the fan-out worker consumes: one day of the lake (or live calls) as a single
ordered list of graph, account and post events.

Each event is (ts_ms, kind, a, b, x):
    user      a=user_id, x=is_private (0/1)
    follow | unfollow | approve        a=follower, b=followee
    block | unblock | mute | unmute    a=actor,    b=target
    post      a=post_id, b=author_id, x=created_ms
    delete    a=post_id, b=author_id, x=created_ms (ts_ms = deleted_at)
Order: time, then kind (accounts first, posts after the graph changes of the same instant), then
ids: a fixed total order, so a checkpoint offset names the same event on every replay.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from candidate_gen.lake_reader import read_days, to_ms
from data import columns as c

KINDS = (
    "user", "follow", "approve", "unfollow", "block", "unblock", "mute", "unmute", "post", "delete",
)
KIND_RANK = {k: i for i, k in enumerate(KINDS)}
GRAPH_KINDS = frozenset(("follow", "approve", "unfollow"))
BLOCK_KINDS = frozenset(("block", "unblock", "mute", "unmute"))
POST_KINDS = frozenset(("post", "delete"))
COLUMNS = ["ts_ms", "kind", "a", "b", "x"]


def frame(rows: list[tuple[int, str, int, int, int]]) -> pd.DataFrame:
    """Events from tuples (live entry points, tests), in stream order."""
    out = pd.DataFrame(rows, columns=COLUMNS)
    return order(out)


def order(events: pd.DataFrame) -> pd.DataFrame:
    events = events.assign(_rank=events["kind"].map(KIND_RANK))
    events = events.sort_values(["ts_ms", "_rank", "a", "b"], kind="stable")
    return events.drop(columns="_rank").reset_index(drop=True).astype(
        {"ts_ms": "int64", "a": "int64", "b": "int64", "x": "int64"}
    )


def lake_day(lake_dir: Path, day: str) -> pd.DataFrame:
    """Every event landed on `day` (lake partitions dt=day), in stream order."""
    parts = []
    users = read_days(lake_dir, "users", day, day, [c.USER_ID, c.UPDATED_AT, c.IS_PRIVATE])
    if len(users):
        parts.append(pd.DataFrame({
            "ts_ms": to_ms(users[c.UPDATED_AT]), "kind": "user", "a": users[c.USER_ID],
            "b": 0, "x": users[c.IS_PRIVATE].astype("int64"),
        }))
    follows = read_days(lake_dir, "follows", day, day, [c.FOLLOWER_ID, c.FOLLOWEE_ID, c.ACTION, c.TS])
    if len(follows):
        parts.append(pd.DataFrame({
            "ts_ms": to_ms(follows[c.TS]), "kind": follows[c.ACTION], "a": follows[c.FOLLOWER_ID],
            "b": follows[c.FOLLOWEE_ID], "x": 0,
        }))
    blocks = read_days(lake_dir, "blocks", day, day, [c.BLOCKER_ID, c.BLOCKED_ID, c.ACTION, c.TS])
    if len(blocks):
        parts.append(pd.DataFrame({
            "ts_ms": to_ms(blocks[c.TS]), "kind": blocks[c.ACTION], "a": blocks[c.BLOCKER_ID],
            "b": blocks[c.BLOCKED_ID], "x": 0,
        }))
    posts = read_days(lake_dir, "posts", day, day, [c.POST_ID, c.AUTHOR_ID, c.CREATED_AT, c.DELETED_AT])
    if len(posts):
        created = to_ms(posts[c.CREATED_AT])
        deleted = posts[c.DELETED_AT].notna().to_numpy()
        deleted_ms = np.where(deleted, to_ms(posts[c.DELETED_AT].fillna(posts[c.CREATED_AT])), created)
        parts.append(pd.DataFrame({
            "ts_ms": deleted_ms, "kind": np.where(deleted, "delete", "post"), "a": posts[c.POST_ID],
            "b": posts[c.AUTHOR_ID], "x": created,
        }))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return order(pd.concat(parts, ignore_index=True))
