"""Hand-built landing rows for tests: small, readable worlds where every value is chosen."""

from __future__ import annotations

import json
from pathlib import Path

from data import lake

DAY = "2026-10-03"
PREV_DAY = "2026-10-02"


def write_jsonl(landing: Path, log_type: str, day: str, rows: list, name: str = "part-00000.jsonl") -> Path:
    """Rows as JSON lines (a str row is written verbatim: malformed lines)."""
    folder = lake.landing_day_dir(landing, log_type, day)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def user(uid: int, ts: str = "2026-09-01T00:00:00.000Z", **over) -> dict:
    row = {"user_id": uid, "created_at": ts, "updated_at": ts, "is_private": False,
           "is_verified": False, "country": "FR"}
    return {**row, **over}


def post(pid: int, author: int, ts: str = f"{PREV_DAY}T10:00:00.000Z", **over) -> dict:
    row = {"post_id": pid, "author_id": author, "created_at": ts, "media_type": "photo",
           "hashtags": ["food"], "caption": "lunch", "deleted_at": None}
    return {**row, **over}


def engagement(eid: str, viewer: int = 1, post_id: int = 100, **over) -> dict:
    row = {"event_id": eid, "viewer_id": viewer, "post_id": post_id, "author_id": 2,
           "type": "like", "value": None, "ts": f"{DAY}T12:00:00.000Z", "surface": "home",
           "request_id": "r1"}
    return {**row, **over}


def follow(follower: int, followee: int, ts: str, action: str = "follow") -> dict:
    return {"follower_id": follower, "followee_id": followee, "action": action, "ts": ts}


def impression(request_id: str, viewer: int, post_id: int, ts: str, position: int = 0, **over) -> dict:
    row = {"request_id": request_id, "viewer_id": viewer, "post_id": post_id, "position": position,
           "surface": "home", "source": "in_network", "ts": ts, "model_version": "logging_policy_v0",
           "score": None, "features": None}
    return {**row, **over}


NEXT_DAY = "2026-10-04"


def feature_world(landing: Path) -> None:
    """Two landing days built so every relationship feature has a value worked out by hand.

    Users 1-5 (4 is private). 1<->2 follow each other; 3 asked to follow 4 (never approved); 5
    follows 4 (approved); 1 followed 3 and unfollowed on DAY. Viewer 1 engages with author 2's
    post 100 on both days and with author 3's post 101; author 2 likes viewer 1's post 102. One
    like is dated 30 minutes after DAY ends (inside the 1 h skew allowance, so it lands on DAY):
    DAY's snapshot must not see it.
    """
    write_jsonl(landing, "users", PREV_DAY, [user(u) for u in (1, 2, 3, 5)] + [user(4, is_private=True)])
    write_jsonl(landing, "users", DAY, [])
    write_jsonl(landing, "follows", PREV_DAY, [
        follow(1, 2, f"{PREV_DAY}T08:00:00.000Z"), follow(2, 1, f"{PREV_DAY}T09:00:00.000Z"),
        follow(3, 4, f"{PREV_DAY}T10:00:00.000Z"),
        follow(5, 4, f"{PREV_DAY}T10:00:00.000Z"), follow(5, 4, f"{PREV_DAY}T11:00:00.000Z", "approve"),
        follow(1, 3, f"{PREV_DAY}T07:00:00.000Z"),
    ])
    write_jsonl(landing, "follows", DAY, [follow(1, 3, f"{DAY}T09:00:00.000Z", "unfollow")])
    write_jsonl(landing, "blocks", PREV_DAY, [])
    write_jsonl(landing, "blocks", DAY, [])
    write_jsonl(landing, "posts", PREV_DAY, [post(100, 2), post(102, 1, f"{PREV_DAY}T12:00:00.000Z")])
    write_jsonl(landing, "posts", DAY, [post(101, 3, f"{DAY}T02:00:00.000Z", media_type="video")])
    write_jsonl(landing, "engagements", PREV_DAY, [engagement("p1", ts=f"{PREV_DAY}T15:00:00.000Z")])
    write_jsonl(landing, "engagements", DAY, [
        engagement("d1"),  # like 12:00
        engagement("d2", type="comment", ts=f"{DAY}T13:00:00.000Z"),
        engagement("d3", type="dwell", value=5000.0, ts=f"{DAY}T12:01:00.000Z"),
        engagement("d4", viewer=2, post_id=102, author_id=1, ts=f"{DAY}T14:00:00.000Z"),
        engagement("d5", post_id=101, author_id=3, ts=f"{DAY}T15:00:00.000Z"),
        engagement("late", ts=f"{NEXT_DAY}T00:30:00.000Z"),
    ])
    write_jsonl(landing, "impressions", PREV_DAY, [impression("r0", 1, 100, f"{PREV_DAY}T14:59:00.000Z")])
    write_jsonl(landing, "impressions", DAY, [
        impression("r1", 1, 100, f"{DAY}T11:59:00.000Z"),
        impression("r1", 1, 101, f"{DAY}T11:59:00.000Z", position=1),
        impression("r2", 2, 102, f"{DAY}T13:59:00.000Z", surface="explore", source="explore_popular"),
        *[impression("r3", 5, p, f"{DAY}T16:00:00.000Z", position=i) for i, p in enumerate((100, 101, 102))],
    ])
