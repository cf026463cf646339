"""Explore's cold-start fallback: the most engaged posts of the last two days, the same for every
viewer, so a new viewer with no tags, follows or affinity still gets a page.

The set is global: one read serves every request for `[popular] cache_ms` of request time (the
builder rewrites it once a day), so most requests cost no Redis round trip at all.
"""

from __future__ import annotations

import threading

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import PopularConfig
from candidate_gen.reads import Reads
from candidate_gen.sources.base import Plan, SourceRequest


class PopularSource:
    name = "popular"

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys
        self.config = cfg.source(self.name)
        self.cache_ms = PopularConfig.from_section(cfg.section("popular")).cache_ms
        self._cached: tuple[int, CandidateBlock] | None = None  # (read at, request ms), candidates
        self._lock = threading.Lock()

    def plan(self, request: SourceRequest) -> Plan:
        cached = self._cached
        if cached is not None and 0 <= request.now_ms - cached[0] < self.cache_ms:
            return cached[1]  # blocks are immutable: shared, not copied
        rows = (yield Reads().window([self.keys.popular], "+inf", "-inf", self.config.cap)).windows[0]
        found = CandidateBlock.build(rows.post, rows.author, 0, self.name, rows.scores)
        with self._lock:
            if self._cached is None or request.now_ms >= self._cached[0]:
                self._cached = (request.now_ms, found)
        return found
