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

"Posts like this" (Instagram's "see fewer"): each push-away also presses on its post's hashtags, a
hashtag's pressure the sum over the pushed-away posts that carry it. A candidate's is the mean over its
own hashtags times `hashtag_weight`, so a post made of pushed-away hashtags is lowered as its author
would be, and one sharing a single generic tag of several only a little. The hashtags are not stored
here: the ranking service reads them, of the pushed-away posts and of the candidates, from the search
index (candidate_gen/search/post_text_index.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


@dataclass(frozen=True)
class Pressure:
    """A viewer's push-aways as of now, faded: per author, and per pushed-away post (whose hashtags
    carry it on to "posts like this")."""

    authors: dict[int, float]
    posts: dict[int, float]


def pressures(entries: Sequence[tuple[bytes, float]], now_ms: int, cfg: FatigueConfig) -> Pressure:
    """From a viewer's set (`ZRANGE ... WITHSCORES`): what is in the window, faded by its age."""
    authors: dict[int, float] = {}
    posts: dict[int, float] = {}
    for member, ts in entries:
        author, post, kind = member.split(b":", 2)
        weight = cfg.weights.get(kind.decode(), 0.0)
        age_h = max(0.0, now_ms - ts) / HOUR_MS
        if weight and age_h * HOUR_MS <= cfg.window_ms:
            p = weight * 0.5 ** (age_h / cfg.half_life_hours)
            authors[int(author)] = authors.get(int(author), 0.0) + p
            posts[int(post)] = posts.get(int(post), 0.0) + p
    return Pressure(authors, posts)


def hashtag_pressure(pushed: Mapping[int, float], tags_of: Mapping[int, Sequence[str]],
                     candidates: Sequence[int]) -> np.ndarray:
    """Each candidate's "posts like this" pressure: the mean, over its hashtags, of each hashtag's
    pressure (the sum over the pushed-away posts carrying it); 0 for a post without hashtags."""
    tag: dict[str, float] = {}
    for post, p in pushed.items():
        for t in tags_of.get(post, ()):
            tag[t] = tag.get(t, 0.0) + p
    out = np.zeros(len(candidates), np.float64)
    if tag:
        for i, post in enumerate(candidates):
            tags = tags_of.get(post, ())
            if tags and not tag.keys().isdisjoint(tags):
                out[i] = sum(tag.get(t, 0.0) for t in tags) / len(tags)
    return out


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
