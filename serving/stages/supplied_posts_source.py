"""SuppliedPostsSource: /v1/rank's candidates are the post ids the caller sends; their authors and
creation times come from the post index the fan-out worker keeps (`post:{id}`, one MGET). Unknown
ids (never published, or older than the max age) are removed with reason `unknown_post`. If the
index cannot be read nothing can be cleared for privacy, so nothing is returned (fail closed)."""

from __future__ import annotations

from candidate_gen.config import CandidateConfig
from candidate_gen.records import Candidate
from serving.pipeline import FeedQuery, FeedState

SOURCE = "supplied"


class SuppliedPostsSource:
    name = "sources"

    def __init__(self, client, cfg: CandidateConfig):
        self.client, self.keys = client, cfg.keys

    def run(self, query: FeedQuery, state: FeedState) -> None:
        ids = list(dict.fromkeys(query.post_ids))  # a post asked for twice is ranked once
        raw = self.client.mget([self.keys.post_meta(p) for p in ids]) if ids else []
        found = []
        for post, meta in zip(ids, raw):
            if meta is None:
                state.removed["unknown_post"] += 1
                continue
            author, _, created = meta.partition(b":")
            found.append(Candidate(post, int(author), int(created), SOURCE, 0.0))
        state.candidates = found

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.candidates = []
        state.removed["post_index_unavailable"] += len(set(query.post_ids))
