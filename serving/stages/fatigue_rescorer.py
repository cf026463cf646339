"""FatigueRescorer: the posts of an author the viewer pushed away ("see fewer", "not interested",
hide, report) keep `exp(-strength * pressure)` of their score, the pressure fading with the pushes'
age (candidate_gen/fatigue.py; Twitter's FeedbackFatigueScorer). One read of the viewer's fatigue
set, sent with the sources' first round trip (a rider: serving.stages.candidate_sources_stage), or
its own when that round trip did not carry it; a viewer who pushed nothing away has none, and their
scores stay as they are."""

from __future__ import annotations

import numpy as np

from candidate_gen.fatigue import FatigueConfig, author_factors
from candidate_gen.keys import Keys
from candidate_gen.reads import Reads
from serving.experiment import CONTROL, TREATMENT
from serving.pipeline import FeedQuery, FeedState
from serving.stages.out_of_network_rescorer import scaled


class FatigueRescorer:
    name = "fatigue"

    def __init__(self, client, keys: Keys, cfg: FatigueConfig, treatment: bool | None = None):
        """`treatment`: on or off in an experiment's treatment arm (None: as in the control, `cfg`)."""
        self.client, self.keys, self.cfg = client, keys, cfg
        self.on = {CONTROL: cfg.enabled, TREATMENT: cfg.enabled if treatment is None else treatment}

    @property
    def reads_any(self) -> bool:
        """Whether any arm rescores (then its read rides the sources' round trip)."""
        return any(self.on.values())

    def reads(self, query: FeedQuery) -> Reads:
        """The read, for the sources' first round trip to carry."""
        return Reads().command("zrangebyscore", *self._range(query), withscores=True)

    def _range(self, query: FeedQuery) -> tuple[str, int, str]:
        return self.keys.fatigue(query.viewer_id), query.now_ms - self.cfg.window_ms, "+inf"

    def run(self, query: FeedQuery, state: FeedState) -> None:
        if not self.on[query.arm] or state.scores is None or not len(state.scores):
            return
        ridden = state.rides.get(self.name)
        if ridden is not None:
            entries = ridden.commands[0]
        else:  # the sources' round trip did not carry it (it failed, or no source ran)
            entries = self.client.zrangebyscore(*self._range(query), withscores=True)
        factors = author_factors([(m if isinstance(m, bytes) else m.encode(), s) for m, s in entries],
                                 query.now_ms, self.cfg)
        if not factors:
            return
        pushed = np.fromiter(factors, dtype=np.int64, count=len(factors))
        kept = np.fromiter(factors.values(), dtype=np.float64, count=len(factors))
        order = np.argsort(pushed)
        pushed, kept = pushed[order], kept[order]
        authors = state.candidates.author
        at = np.minimum(np.searchsorted(pushed, authors), len(pushed) - 1)
        factor = np.where(pushed[at] == authors, kept[at], 1.0)
        state.scores = scaled(state.scores, factor)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass  # scores stay as they were; the response says `degraded: fatigue`
