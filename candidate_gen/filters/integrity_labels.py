"""IntegrityLabels: the candidates' content labels (candidate_gen.integrity), read on the filter
chain's round trip. It removes nothing itself: what a label does (allow, interstitial, downrank,
drop; stricter out of network) is the ranking service's integrity stage's, which can differ by arm
of an experiment. Its state, post id -> labels (the post's and its author's), only for labelled
candidates, reaches that stage through the chain's result (`ChainResult.states`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig


class IntegrityLabels:
    name = "integrity"
    fails_closed = False  # labels guard quality, not privacy; unread, the stage says degraded

    def __init__(self, cfg: CandidateConfig):
        self.keys = cfg.keys

    def prepare(self, pipe: Any, viewer_id: int, block: CandidateBlock) -> int:
        pipe.hmget(self.keys.integrity_posts, block.post.tolist())
        pipe.hmget(self.keys.integrity_accounts, block.author.tolist())
        return 2

    def decode(self, block: CandidateBlock, replies: list[Any]) -> dict[int, frozenset[str]]:
        posts, accounts = replies
        out: dict[int, frozenset[str]] = {}
        for k in np.flatnonzero([p is not None or a is not None for p, a in zip(posts, accounts, strict=True)]):
            labels = {x for raw in (posts[k], accounts[k]) if raw for x in raw.decode().split(",")}
            out[int(block.post[k])] = frozenset(labels)
        return out

    def drop(self, viewer_id: int, block: CandidateBlock, state: Any, now_ms: int) -> np.ndarray:
        return np.zeros(len(block), dtype=bool)
