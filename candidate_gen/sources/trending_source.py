"""Explore: what is taking off now, globally and in the viewer's favourite hashtags.

One round trip reads the global trending set and the viewer's top tags; a second reads those tags'
trending sets. A post's score is its velocity (the builder's), multiplied for a post of one of the
viewer's tags by 1 + tag_boost * (tag weight / the viewer's top tag weight), so the viewer's niches
can outrank the global chart; a post in several sets keeps its best score.
"""

from __future__ import annotations

import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import TrendingConfig
from candidate_gen.records import Candidate, candidates_from_zset
from candidate_gen.sources.base import SourceRequest


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
        pipe.zrevrange(self.keys.trending, 0, cap - 1, withscores=True)
        pipe.zrevrange(self.keys.viewer_tags(request.viewer_id), 0, t.source_tags - 1, withscores=True)
        global_rows, tags = pipe.execute()
        best = dict(global_rows)
        top_weight = tags[0][1] if tags else 0.0
        if tags and top_weight > 0:
            pipe = self.client.pipeline(transaction=False)
            for tag, _ in tags:
                pipe.zrevrange(self.keys.trending_tag(_text(tag)), 0, t.source_per_tag - 1, withscores=True)
            for (_, weight), rows in zip(tags, pipe.execute(), strict=True):
                boost = 1.0 + t.tag_boost * max(weight, 0.0) / top_weight
                for raw, score in rows:
                    boosted = score * boost
                    if boosted > best.get(raw, float("-inf")):
                        best[raw] = boosted
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:cap]
        return candidates_from_zset(ranked, self.name, score_is_time=False)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
