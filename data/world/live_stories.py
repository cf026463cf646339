"""The stories live mode's authors post, and what the player knows of them (data/world/live.py;
docs/live_mode.md "Stories").

The record is the player's own: every story it posted (id -> author, created ms, the step whose
events carried its deletion, if its author deleted it), and the lake's stories live when the play
started when the caller read them (candidate_gen.stories.live_in_lake: a room above this one). Each
tray the service serves is checked against it (`check`), never against the response's own
`created_at_ms`.

Ids: a play numbers its stories from STORY_ID_BASE + the clock's ms when it starts, or from above
the largest seeded id if that is higher. A world's own story ids are far below 10**12; the next play
starts where this one ended, later by more milliseconds than this one posts stories (a few per
5-minute step), so two plays never share an id, and none is kept in a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data import columns as c
from data.columns import STORY_TTL_MS
from data.days import HOUR_MS
from data.stream.entries import Event
from data.stream.said import story_event
from data.world.truth import examine_probability

STORY_ID_BASE = 10**12
DELETE_WITHIN_MS = 12 * HOUR_MS  # a story its author deletes goes at a uniform time in its first 12 h
VIDEO_SHARE = 0.3  # stories posted as video (the rest photos)
WATCH_ACCOUNTS = 3  # a viewer may open the tray's first few accounts only
WATCH_ON_P = 0.85  # after each story of an account, the viewer watches its next one (else taps away)


@dataclass
class KnownStory:
    author: int
    created_ms: int
    posted: bool  # by this play (else the lake's, seeded)
    deleted_step: int | None = None  # the step whose events carried its deletion onto the stream


@dataclass
class TrayCheck:
    """One tray's stories against the player's record."""

    served: int = 0
    expired: int = 0  # recorded created + 24 h <= served_at, or created after served_at
    deleted: int = 0  # deleted by their author at least one step before the tray's
    unknown: int = 0  # neither posted by the player nor seeded: informative, not an error


class LiveStories:
    def __init__(self, start_ms: int, seeded: pd.DataFrame | None = None):
        """`start_ms`: the clock when the play starts; `seeded`: story_id, author_id, created_ms of
        the stories live then (candidate_gen.stories.live_in_lake), or None."""
        self.known: dict[int, KnownStory] = {}
        if seeded is not None:
            for s, a, t in zip(seeded[c.STORY_ID].tolist(), seeded[c.AUTHOR_ID].tolist(),
                               seeded["created_ms"].tolist(), strict=True):
                self.known[int(s)] = KnownStory(int(a), int(t), posted=False)
        self.next_id = max(STORY_ID_BASE + int(start_ms), max(self.known, default=0) + 1)
        self.pending: dict[int, int] = {}  # story id -> when its author deletes it
        self.posted = self.deleted = 0

    def post(self, rng: np.random.Generator, authors: np.ndarray, now_ms: int, delete_share: float) -> list[Event]:
        """A story by each of `authors` at `now_ms`; a `delete_share` of them to be deleted by their
        author within DELETE_WITHIN_MS (`deletions`)."""
        events = []
        for author in authors.tolist():
            sid, self.next_id = self.next_id, self.next_id + 1
            self.known[sid] = KnownStory(int(author), now_ms, posted=True)
            if rng.random() < delete_share:
                self.pending[sid] = now_ms + 1 + int(rng.integers(DELETE_WITHIN_MS))
            media = "video" if rng.random() < VIDEO_SHARE else "photo"
            events.append(story_event(sid, int(author), now_ms, media_type=media))
        self.posted += len(events)
        return events

    def deletions(self, now_ms: int, step: int) -> list[Event]:
        """The deletions due by `now_ms`, said in `step` (their events go onto the stream with its)."""
        due = sorted(sid for sid, at in self.pending.items() if at <= now_ms)
        events = []
        for sid in due:
            del self.pending[sid]
            story = self.known[sid]
            story.deleted_step = step
            events.append(story_event(sid, story.author, story.created_ms, deleted_ms=now_ms))
        self.deleted += len(events)
        return events

    def check(self, items: list[dict], served_at_ms: int, step: int) -> TrayCheck:
        """A tray's stories (the response's `items`, answered at `served_at_ms` in `step`) against
        the record: the times are the player's own, never the response's."""
        out = TrayCheck()
        for item in items:
            for story in item["stories"]:
                out.served += 1
                known = self.known.get(story["story_id"])
                if known is None:
                    out.unknown += 1
                    continue
                if not known.created_ms <= served_at_ms < known.created_ms + STORY_TTL_MS:
                    out.expired += 1
                # A deletion goes onto the stream with its step's events, at the step's end, and
                # reaches the cache only when the fan-out consumer next polls: a tray of the same
                # step may still hold it, rightly. Only a deletion at least one step older than the
                # tray is counted (at a fast clock a step is under a real second: a consumer that
                # lags by more shows here as well).
                if known.deleted_step is not None and known.deleted_step < step:
                    out.deleted += 1
        return out

    def watch(self, rng: np.random.Generator, items: list[dict]) -> list[int]:
        """The stories a viewer watches of a tray: of its first WATCH_ACCOUNTS accounts, each opened
        as likely as a post at its position is examined (data.world.truth.examine_probability),
        its stories played oldest first until the viewer taps away (WATCH_ON_P after each)."""
        watched: list[int] = []
        for item in items[:WATCH_ACCOUNTS]:
            if rng.random() >= examine_probability(np.array([item["position"]]))[0]:
                continue
            for story in item["stories"]:
                watched.append(int(story["story_id"]))
                if rng.random() >= WATCH_ON_P:
                    break
        return watched
