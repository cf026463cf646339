"""Feedback fatigue: a post a viewer pushed away ("see fewer", "not interested", hide, report)
lowers that author's posts for that viewer, less and less as the push fades (Twitter's
FeedbackFatigueScorer; X's 2026 mixer weighs the same signals).

State, per viewer: one sorted set `<prefix>{u:<viewer>}:fatigue` (the viewer's slot), member
`<author>:<post>:<type>`, score the event's time (ms). The same event twice is the same member,
so a re-delivered stream entry or a day built again changes nothing. Written from the stream by the
fan-out consumer (candidate_gen.stream_fanout, within a poll of the event) and from the lake by the
daily `candidates/fatigue` asset (`build_fatigue`); read by the ranking service's FatigueRescorer.

An author's pressure is the sum over the viewer's push-aways of `weights[type] *
0.5 ** (age / half_life)`, over the last `window_days`; their posts keep `exp(-strength *
pressure)` of their score (one fresh "see fewer": ~37 % at strength 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as pads
import redis

from candidate_gen.config import FatigueConfig
from candidate_gen.explore.lake_reads import lookback_first_day
from candidate_gen.keys import Keys
from candidate_gen.lake_reader import to_ms
from data import columns as c
from data import lake
from data.days import DAY_S, day_end_ms

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class PushAway:
    viewer: int
    author: int
    post: int
    type: str
    ts_ms: int


def fatigue_member(author: int, post: int, kind: str) -> bytes:
    return b"%d:%d:%s" % (author, post, kind.encode())


def record(client: redis.Redis, keys: Keys, events: Iterable[PushAway], cfg: FatigueConfig) -> int:
    """Add push-aways to their viewers' sets in one round trip: each set then keeps its newest
    `cap`, none older than `window_days` before the newest push-away added to it. Own posts are
    ignored. Returns how many were added (0 for one already there)."""
    by_viewer: dict[int, dict[bytes, int]] = {}
    for e in events:
        if e.viewer != e.author and e.type in cfg.weights:
            by_viewer.setdefault(e.viewer, {})[fatigue_member(e.author, e.post, e.type)] = e.ts_ms
    if not by_viewer:
        return 0
    pipe = client.pipeline(transaction=False)
    for viewer, members in by_viewer.items():
        key = keys.fatigue(viewer)
        pipe.zadd(key, members)
        pipe.zremrangebyscore(key, "-inf", f"({max(members.values()) - cfg.window_ms}")
        pipe.zremrangebyrank(key, 0, -(cfg.cap + 1))
        pipe.expire(key, int(cfg.window_days * DAY_S))  # a viewer who stops pushing away is forgotten
    replies = pipe.execute()
    return int(sum(replies[0::4]))


def author_factors(entries: Sequence[tuple[bytes, float]], now_ms: int, cfg: FatigueConfig) -> dict[int, float]:
    """Author -> the share of their posts' score kept, from a viewer's set (`ZRANGE ... WITHSCORES`)."""
    pressure: dict[int, float] = {}
    for member, ts in entries:
        author, _, kind = member.split(b":", 2)
        weight = cfg.weights.get(kind.decode(), 0.0)
        age_h = max(0.0, now_ms - ts) / HOUR_MS
        if weight and age_h * HOUR_MS <= cfg.window_ms:
            pressure[int(author)] = pressure.get(int(author), 0.0) + weight * 0.5 ** (age_h / cfg.half_life_hours)
    return {a: math.exp(-cfg.strength * p) for a, p in pressure.items()}


def build_fatigue(lake_dir: Path, day: str, client: redis.Redis, cfg: FatigueConfig, keys: Keys) -> dict:
    """Every push-away landed in the `window_days` up to `day` into its viewer's set (the daily
    asset; a push-away that came by the stream is already there and is not added twice)."""
    first = lookback_first_day(day, cfg.window_ms)
    days = [d for d in lake.partition_days(lake_dir, "engagements") if first <= d <= day]
    types = sorted(cfg.weights)
    frame = lake.read_partitions(lake_dir, "engagements", days, [c.VIEWER_ID, c.AUTHOR_ID, c.POST_ID, c.TYPE, c.TS],
                                 pads.field(c.TYPE).isin(types))
    ts = to_ms(frame[c.TS]) if len(frame) else frame[c.TS]
    keep = (ts >= day_end_ms(day) - cfg.window_ms) & (ts <= day_end_ms(day))  # as of the end of `day`
    events = [PushAway(*row) for row in zip(
        frame[c.VIEWER_ID][keep].tolist(), frame[c.AUTHOR_ID][keep].tolist(), frame[c.POST_ID][keep].tolist(),
        frame[c.TYPE][keep].astype(str).tolist(), ts[keep].tolist(), strict=True)]
    added = record(client, keys, events, cfg)
    return {"day": day, "days_read": len(days), "push_aways": len(events), "added": added,
            "viewers": len({e.viewer for e in events}), "types": types}
