"""Explore: what is taking off now, globally and in the viewer's favourite hashtags.

One round trip reads the global trending set and the viewer's top tags; a second reads those tags'
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

import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import TrendingConfig
from candidate_gen.records import Candidate, candidates_from_zset
from candidate_gen.sources.base import SourceRequest
from features.streaming import spec


class TrendingSource:
    name = "trending"

    def __init__(self, client: redis.Redis, cfg: CandidateConfig):
        self.client = client
        self.keys = cfg.keys
        self.config = cfg.source(self.name)
        self.trending = TrendingConfig.from_section(cfg.section("trending"))

    def fetch(self, request: SourceRequest) -> list[Candidate]:
        cap, t = self.config.cap, self.trending
        pipe = self.client.pipeline(transaction=False)
        pipe.zrevrange(spec.trend_key(t.live_prefix) if t.live else self.keys.trending, 0, cap - 1, withscores=True)
        pipe.zrevrange(self.keys.viewer_tags(request.viewer_id), 0, t.source_tags - 1, withscores=True)
        global_rows, tags = pipe.execute()
        live = t.live and bool(global_rows)
        top_weight = tags[0][1] if tags else 0.0
        pipe = self.client.pipeline(transaction=False)
        if t.live and not live:  # the stream's sets are empty (no worker running): the daily build's
            pipe.zrevrange(self.keys.trending, 0, cap - 1, withscores=True)
        if tags and top_weight > 0:
            for tag, _ in tags:
                key = spec.trend_tag_key(_text(tag), t.live_prefix) if live else self.keys.trending_tag(_text(tag))
                pipe.zrevrange(key, 0, t.source_per_tag - 1, withscores=True)
        replies = pipe.execute() if len(pipe) else []
        if t.live and not live:
            global_rows, replies = replies[0], replies[1:]
        reference = global_rows[0][1] if live else 0.0
        best = dict(_relative(global_rows, reference) if live else global_rows)
        if tags and top_weight > 0:
            for (_, weight), rows in zip(tags, replies, strict=True):
                boost = 1.0 + t.tag_boost * max(weight, 0.0) / top_weight
                for raw, score in _relative(rows, reference) if live else rows:
                    boosted = score * boost
                    if boosted > best.get(raw, float("-inf")):
                        best[raw] = boosted
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:cap]
        return candidates_from_zset(ranked, self.name, score_is_time=False)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _relative(rows: list[tuple[bytes, float]], reference: float) -> list[tuple[bytes, float]]:
    """A stream set's (member, held) rows as (member, velocity relative to the global set's best)."""
    return [(member, 2.0 ** (held - reference)) for member, held in rows]
