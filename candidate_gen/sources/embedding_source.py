"""Explore source: recent posts of the authors nearest to the viewer in the co-engagement embedding.

Two steps (candidate_gen.reads): (1) the set of authors the viewer follows; (2) a few recent posts
of each of the M nearest authors they do not follow, within the max age. The viewer's vector comes from the
same loaded model as the index (each day's ALS is its own space: a vector of another day's model
would be meaningless against this index); the copies published to Redis are for other readers.
A viewer without a vector (new, or inactive over the training window) gets nothing here: the
popular source covers cold viewers. A day's model switched off for want of engagements to learn
from makes the source report `disabled` with that reason. The index is a loaded `EmbeddingModel`,
or a callable returning the current one, so the daily model can be swapped in without rebuilding
the source.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import EmbeddingConfig
from candidate_gen.explore.embeddings import EmbeddingModel
from candidate_gen.reads import Reads
from candidate_gen.sources.base import Plan, SourceDisabled, SourceRequest

ModelRef = EmbeddingModel | Callable[[], EmbeddingModel | None] | None


class EmbeddingSource:
    name = "embedding"

    def __init__(self, cfg: CandidateConfig, index: ModelRef):
        self.config = cfg.source(self.name)
        self.keys = cfg.keys
        self.max_age_ms = cfg.feed.max_age_ms
        self.conf = EmbeddingConfig.of(cfg)
        self._current = index if callable(index) else (lambda: index)

    def plan(self, request: SourceRequest) -> Plan:
        model = self._current()
        if model is None:
            return CandidateBlock.empty()
        if model.disabled:
            raise SourceDisabled(f"embedding model {model.day} switched off: {model.disabled}")
        viewer = request.viewer_id
        vector = model.viewer_vector(viewer)
        if vector is None:
            return CandidateBlock.empty()
        got = yield Reads().command("smembers", self.keys.following(viewer))
        exclude = {int(a) for a in got.commands[0]}
        exclude.add(viewer)
        authors, sims = model.nearest_authors(vector, self.conf.nearest_authors, exclude)
        if len(authors) == 0:
            return CandidateBlock.empty()

        keys = [self.keys.author_posts(a) for a in authors.tolist()]
        got = yield Reads().window(keys, request.now_ms, request.now_ms - self.max_age_ms, self.conf.posts_per_author)
        rows = got.windows[0]
        found = CandidateBlock.build(rows.post, rows.author, rows.scores, self.name,
                                     np.repeat(sims.astype(np.float64), rows.counts))
        # most similar author, then newest
        return found.take(np.lexsort((-found.created_ms, -found.score))[: self.config.cap])
