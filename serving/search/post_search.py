"""PostSearch: a viewer's query → the index's best text matches → the feed's privacy filters → the
viewer's ranking of what is left.

1. The query's words, quoted (candidate_gen.search.search_terms: no FTS5 syntax gets through);
   none: EmptyQuery (the route's 422).
2. The index's newest `window` matches (at least `overfetch × limit`, so the page still fills when
   the filters drop some), each with its BM25 (hashtags weigh twice a caption word).
3. The shared filters (candidate_gen.filters.search_chain: own post, deleted, blocked either way,
   muted, private and not an approved follower), one Redis round trip, failing closed as the feed's
   do. What they remove is only counted in the debug log: per post or per reason, a response would
   tell who blocked or muted whom.
4. One more round trip for what the viewer has with the authors (follows, affinity; fails open: the
   text and recency still rank), then SearchScorer.
5. The content labels' outcomes, as the feed's (read by the same chain; serving.stages.
   integrity_filter_stage), a followed author's post in network: drop, downrank, interstitial
   (the item's `interstitial`); then the top `limit`.

A missing index (not built yet) or one that cannot be read is a degraded, empty answer saying why,
never an error.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candidate_gen.block import CandidateBlock
from candidate_gen.filters import FilterChain
from candidate_gen.keys import Keys
from candidate_gen.search.post_text_index import IndexMissing, SearchIndexReader
from candidate_gen.search.search_terms import SearchTerms
from data.redis_client import FAILURES
from serving.config import SearchConfig
from serving.experiment import CONTROL
from serving.search.search_scorer import SearchScorer
from serving.stages.integrity_filter_stage import IntegrityFilterStage
from serving.stages.out_of_network_rescorer import scaled

logger = logging.getLogger(__name__)


@dataclass
class SearchOutcome:
    items: list[dict[str, Any]]
    degraded: dict[str, str] = field(default_factory=dict)  # step -> why it fell back
    matched: int = 0  # posts the index returned (before the filters: a count, never which)


class PostSearch:
    def __init__(self, index: SearchIndexReader | None, chain: FilterChain, client: Any, keys: Keys,
                 cfg: SearchConfig, integrity: IntegrityFilterStage | None = None):
        """`integrity`: the labels' outcomes to apply (None: none; the chain must read the labels)."""
        self.index, self.chain, self.client, self.keys, self.cfg = index, chain, client, keys, cfg
        self.integrity = integrity
        self.scorer = SearchScorer(cfg.text_weight, cfg.relationship_weight, cfg.recency_weight,
                                   cfg.recency_half_life_h)

    def terms(self, text: str) -> SearchTerms:
        """The query's words (EmptyQuery when it holds none)."""
        return SearchTerms.parse(text, self.cfg.max_words)

    def search(self, viewer_id: int, terms: SearchTerms, limit: int, now_ms: int,
               time_left_ms=None) -> SearchOutcome:
        if self.index is None:
            return SearchOutcome([], {"index": "no search index configured"})
        try:
            found = self.index.match(terms, max(self.cfg.window, limit * self.cfg.overfetch), self.cfg.prefix)
        except IndexMissing as exc:
            return SearchOutcome([], {"index": str(exc)})
        except sqlite3.Error as exc:
            logger.warning("search index read failed: %s", exc)
            return SearchOutcome([], {"index": f"unreadable: {exc}"})
        outcome = SearchOutcome([], matched=len(found))
        if not len(found):
            return outcome
        block = CandidateBlock.build(found.post, found.author, found.created_ms, "search", found.relevance)
        result = self.chain.run(viewer_id, block, now_ms, time_left_ms)
        if result.degraded:
            outcome.degraded["filters"] = "state unavailable: " + ",".join(result.degraded)
        logger.debug("search viewer %s: %d matched, removed %s", viewer_id, len(found), dict(result.counts))
        kept = result.kept
        if not len(kept):
            return outcome
        follows, affinity = self._relationships(viewer_id, kept.author, outcome)
        scores = self.scorer.score(kept, now_ms, follows, affinity)
        covered: dict[int, str] = {}
        labels = result.states.get("integrity")
        if self.integrity is not None and self.integrity.on[CONTROL]:
            if labels is None:
                outcome.degraded["integrity"] = "labels unread"
            elif labels:
                decision = self.integrity.decide(kept.post, follows, labels)
                covered = decision.interstitials
                scores = scaled(scores, decision.factor)[decision.keep]
                kept = kept.take(decision.keep)
        top = np.argsort(-scores, kind="stable")[:limit]
        outcome.items = [{"post_id": p, "author_id": a, "score": s, "position": k, "interstitial": covered.get(p)}
                         for k, (p, a, s) in enumerate(zip(kept.post[top].tolist(), kept.author[top].tolist(),
                                                           scores[top].tolist(), strict=True))]
        return outcome

    def _relationships(self, viewer_id: int, authors: np.ndarray, outcome: SearchOutcome):
        """Per author (aligned with `authors`): does the viewer follow them, and the viewer's affinity."""
        unique, back = np.unique(authors, return_inverse=True)
        members = unique.tolist()
        try:
            pipe = self.client.pipeline(transaction=False)  # both keys in the viewer's slot
            pipe.smismember(self.keys.following(viewer_id), members)
            pipe.zmscore(self.keys.top_affinity(viewer_id), members)
            followed, scores = pipe.execute()
        except FAILURES as exc:
            outcome.degraded["relationships"] = f"unavailable: {type(exc).__name__}"
            return np.zeros(len(authors), bool), np.zeros(len(authors))
        follows = np.asarray(followed, dtype=bool)[back]
        affinity = np.array([0.0 if s is None else float(s) for s in scores])[back]
        return follows, affinity
