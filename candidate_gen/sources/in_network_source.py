"""InNetworkSource: Home's own candidates, the followed accounts' recent posts (fan-out cache plus
celebrity pulls, see candidate_gen.home). Candidates carry source "in_network" or "celebrity"."""

from __future__ import annotations

import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.home import HomeCandidateReader
from candidate_gen.sources.base import Plan, SourceRequest


class InNetworkSource:
    name = "in_network"

    def __init__(self, client: redis.Redis, cfg: CandidateConfig):
        self.config = cfg.source(self.name)
        self.reader = HomeCandidateReader(client, cfg)

    def plan(self, request: SourceRequest) -> Plan:
        read = yield from self.reader.plan(request.viewer_id, request.now_ms, self.config.cap)
        return read.candidates
