"""SuppliedPostsSource: /v1/rank's candidates are the post ids the caller sends; their authors and
creation times come from the post index the fan-out worker keeps (`post:<id>`, one MGET). Unknown
ids (never published, or older than the max age) are removed with reason `unknown_post`. If the
index cannot be read nothing can be cleared for privacy, so nothing is returned (fail closed)."""

from __future__ import annotations

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig
from candidate_gen.records import parse_member_arrays
from features.online.transport import ClusterMget, cluster_bytes
from serving.pipeline import FeedQuery, FeedState

SOURCE = "supplied"


class SuppliedPostsSource:
    name = "supplied_posts"

    def __init__(self, client, cfg: CandidateConfig):
        self.client, self.keys = client, cfg.keys
        # a cluster: each post's GET to the node owning its slot (the packed reader's transport);
        # redis-py's mget_nonatomic costs ~45 µs of Python a key, too much for the request path
        self._mget = ClusterMget(client) if cluster_bytes(client) else client.mget

    def run(self, query: FeedQuery, state: FeedState) -> None:
        ids = list(dict.fromkeys(query.post_ids))  # a post asked for twice is ranked once
        raw = self._mget([self.keys.post_meta(p).encode() for p in ids]) if ids else []
        known = [meta is not None for meta in raw]
        if not all(known):
            state.removed["unknown_post"] += known.count(False)
        metas = [meta for meta in raw if meta is not None]
        # b"<author>:<created ms>", parsed in one go like the candidate sets' members
        author, created = parse_member_arrays(metas) if metas else (np.zeros(0), np.zeros(0))
        post = np.array(ids, dtype=np.int64)[np.array(known, dtype=bool)] if ids else np.zeros(0)
        state.candidates = CandidateBlock.build(post, author, created, SOURCE, 0.0)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.candidates = CandidateBlock.empty()
        state.removed["post_index_unavailable"] += len(set(query.post_ids))
