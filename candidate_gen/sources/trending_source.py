"""Explore: what is taking off now, globally and in the viewer's favourite hashtags.

One step reads the global trending set and the viewer's top tags; a second reads those tags'
trending sets (and the daily global set, when the stream's is empty). A post's score is its
velocity, multiplied for a post of one of the viewer's tags by 1 + tag_boost * (tag weight / the
viewer's top tag weight), so the viewer's niches can outrank the global chart; a post in several
sets keeps its best score.

The sets are the stream's (`[trending] live`, on by default: the stream feature worker keeps them
as engagements arrive, features/streaming/spec.py) while the stream's global set holds any post,
else the daily build's (candidate_gen/explore/trending.py). The stream's sets hold log2(velocity)
plus a decay term common to every post at a given moment; the source scores a post by its velocity
relative to the best post it read, 2 ** (held - best held), so that scores stay in (0, 1].
"""

from __future__ import annotations

import numpy as np

from candidate_gen.block import CandidateBlock, first_occurrences
from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import TrendingConfig
from candidate_gen.reads import Reads
from candidate_gen.sources.base import Plan, SourceRequest
from features.streaming import spec


class TrendingSource:
    name = "trending"

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys
        self.config = cfg.source(self.name)
        self.trending = TrendingConfig.from_section(cfg.section("trending"))

    def plan(self, request: SourceRequest) -> Plan:
        cap, t = self.config.cap, self.trending
        got = yield (Reads()
                     .window([spec.trend_key(t.live_prefix) if t.live else self.keys.trending], "+inf", "-inf", cap)
                     .command("zrevrange", self.keys.viewer_tags(request.viewer_id), 0, t.source_tags - 1,
                              withscores=True))
        rows, (tags,) = got.windows[0], got.commands
        live = t.live and len(rows) > 0
        tags = tags if tags and tags[0][1] > 0 else []  # weights are the viewer's: none positive, no tags
        reads = Reads()
        if t.live and not live:  # the stream's sets are empty (no worker running): the daily build's
            reads.window([self.keys.trending], "+inf", "-inf", cap)
        if tags:
            reads.window([spec.trend_tag_key(_text(tag), t.live_prefix) if live else self.keys.trending_tag(_text(tag))
                          for tag, _ in tags], "+inf", "-inf", t.source_per_tag)
        tag_rows = None
        if reads.windows:
            got = yield reads
            rows = got.windows[0] if t.live and not live else rows
            tag_rows = got.windows[-1] if tags else None
        reference = float(rows.scores[0]) if live else 0.0
        parts = [CandidateBlock.build(rows.post, rows.author, 0, self.name, _velocity(rows.scores, live, reference))]
        if tag_rows is not None:
            weights = np.maximum(np.array([w for _, w in tags], dtype=np.float64), 0.0)
            boost = np.repeat(1.0 + t.tag_boost * weights / tags[0][1], tag_rows.counts)
            parts.append(CandidateBlock.build(tag_rows.post, tag_rows.author, 0, self.name,
                                              _velocity(tag_rows.scores, live, reference) * boost))
        found = CandidateBlock.concat(parts)
        # a post in several sets keeps its best score; best first, ties by post id
        found = found.take(np.lexsort((found.post, -found.score)))
        return found.take(first_occurrences(found.post)).take(slice(0, cap))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _velocity(held: np.ndarray, live: bool, reference: float) -> np.ndarray:
    """A set's scores: the daily set's velocity as stored; a stream set's held value as velocity
    relative to the stream's global best, 2 ** (held - reference)."""
    return np.exp2(held - reference) if live else held
