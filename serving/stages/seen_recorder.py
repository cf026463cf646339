"""SeenRecorder: served posts join the viewer's already-seen set, so the next page (and the next
request) shows new posts (candidate_gen.filters.already_seen_filter.record_seen)."""

from __future__ import annotations

from candidate_gen.config import CandidateConfig
from candidate_gen.filters.already_seen_filter import record_seen
from serving.pipeline import FeedQuery, FeedState


class SeenRecorder:
    name = "record_seen"

    def __init__(self, client, cfg: CandidateConfig):
        self.client, self.cfg = client, cfg

    def apply(self, query: FeedQuery, state: FeedState) -> None:
        posts = state.candidates.post[state.selected].tolist()
        record_seen(self.client, self.cfg, query.viewer_id, posts, query.now_ms)
