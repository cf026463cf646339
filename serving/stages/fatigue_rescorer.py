"""FatigueRescorer: the posts of an author the viewer pushed away ("see fewer", "not interested",
hide, report), and posts like the ones pushed away (their hashtags), keep `exp(-strength *
pressure)` of their score, the pressure fading with the pushes' age (candidate_gen/fatigue.py;
Twitter's FeedbackFatigueScorer). One read of the viewer's fatigue set, sent with the sources' first
round trip (a rider: serving.stages.candidate_sources_stage), or its own when that round trip did not
carry it; a viewer who pushed nothing away has none, and their scores stay as they are.

The hashtags, of the pushed-away posts and of the candidates, come from the search index (one
query for what serving.post_hashtags does not keep), only for a viewer who pushed something away.
Without an index (not built, unreadable) the authors' pressure still applies and the response says
`degraded: fatigue`."""

from __future__ import annotations

import logging
import sqlite3

import numpy as np

from candidate_gen.fatigue import FatigueConfig, hashtag_pressure, pressures
from candidate_gen.keys import Keys
from candidate_gen.reads import Reads
from candidate_gen.search.post_text_index import IndexMissing
from serving.experiment import CONTROL, TREATMENT
from serving.pipeline import FeedQuery, FeedState
from serving.post_hashtags import PostHashtags
from serving.stages.out_of_network_rescorer import scaled

logger = logging.getLogger(__name__)


class FatigueRescorer:
    name = "fatigue"

    def __init__(self, client, keys: Keys, cfg: FatigueConfig, treatment: bool | None = None,
                 hashtags: PostHashtags | None = None):
        """`treatment`: on or off in an experiment's treatment arm (None: as in the control, `cfg`);
        `hashtags`: where posts' hashtags are read (None: authors only)."""
        self.client, self.keys, self.cfg = client, keys, cfg
        self.on = {CONTROL: cfg.enabled, TREATMENT: cfg.enabled if treatment is None else treatment}
        self.hashtags = hashtags if cfg.hashtag_weight > 0 else None

    @property
    def reads_any(self) -> bool:
        """Whether any arm rescores (then its read rides the sources' round trip)."""
        return any(self.on.values())

    def reads(self, query: FeedQuery) -> Reads:
        """The read, for the sources' first round trip to carry."""
        return Reads().command("zrangebyscore", *self._range(query), withscores=True)

    def _range(self, query: FeedQuery) -> tuple[str, int, str]:
        return self.keys.fatigue(query.viewer_id), query.now_ms - self.cfg.window_ms, "+inf"

    def run(self, query: FeedQuery, state: FeedState) -> None:
        if not self.on[query.arm] or state.scores is None or not len(state.scores):
            return
        ridden = state.rides.get(self.name)
        if ridden is not None:
            entries = ridden.commands[0]
        else:  # the sources' round trip did not carry it (it failed, or no source ran)
            entries = self.client.zrangebyscore(*self._range(query), withscores=True)
        pressure = pressures([(m if isinstance(m, bytes) else m.encode(), s) for m, s in entries],
                             query.now_ms, self.cfg)
        if not pressure.authors:
            return
        total = self._authors(pressure.authors, state.candidates.author)
        if self.hashtags is not None:
            total = total + self.cfg.hashtag_weight * self._like_these(pressure.posts, state)
        state.scores = scaled(state.scores, np.exp(-self.cfg.strength * total))

    @staticmethod
    def _authors(pushed: dict[int, float], authors: np.ndarray) -> np.ndarray:
        keys = np.fromiter(pushed, dtype=np.int64, count=len(pushed))
        values = np.fromiter(pushed.values(), dtype=np.float64, count=len(pushed))
        order = np.argsort(keys)
        keys, values = keys[order], values[order]
        at = np.minimum(np.searchsorted(keys, authors), len(keys) - 1)
        return np.where(keys[at] == authors, values[at], 0.0)

    def _like_these(self, pushed: dict[int, float], state: FeedState) -> np.ndarray:
        """The candidates' "posts like this" pressure; 0 (and the response says why) when the index
        cannot be read: the authors' pressure still applies."""
        posts = state.candidates.post.tolist()
        try:
            tags_of = self.hashtags.of([*pushed, *posts])
        except (IndexMissing, sqlite3.Error) as exc:
            logger.debug("fatigue without hashtags: %s", exc)
            state.degraded.setdefault(self.name, f"hashtags: {type(exc).__name__}")
            return np.zeros(len(posts), np.float64)
        return hashtag_pressure(pushed, tags_of, posts)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass  # scores stay as they were; the response says `degraded: fatigue`
