"""IntegrityFilterStage: what a content label does to a candidate (candidate_gen.integrity), one
outcome per label, stricter out of network than for an author the viewer follows
(candidate_gen config `[integrity.outcomes]`; X's visibility rules, Twitter's VisibilityLibrary):

    allow         served as it is
    interstitial  served, flagged for the client to cover (the item's `interstitial`: the label)
    downrank      served with `downrank` of its score
    drop          removed (counted in the response's `filtered` as `integrity`)

A candidate with several labels takes each label's outcome; a drop wins over the rest. The labels
were read on the filter chain's round trip (candidate_gen.filters.integrity_labels). It runs right
after the scorer, so a downrank scales the model's score and the rescorers after it see the result;
a dropped candidate was hydrated for nothing, which the few labelled ones make cheap. Counts per
outcome go to `loupe_rescored_total{stage="integrity"}`. Labels never read (the chain's read
failed: privacy then removed every candidate anyway) or a stage that failed: every candidate is
allowed and the response says `degraded: integrity`. Privacy filters are not here: they stay as
they are, before it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from candidate_gen.config import IntegrityConfig
from serving.experiment import CONTROL, TREATMENT
from serving.pipeline import FeedQuery, FeedState
from serving.stages.out_of_network_rescorer import scaled

DROP, DOWNRANK, INTERSTITIAL = "drop", "downrank", "interstitial"  # candidate_gen.config OUTCOMES


@dataclass
class Decision:
    keep: np.ndarray  # bool per candidate: False where dropped
    factor: np.ndarray  # the share of its score each keeps (downrank), 1 elsewhere
    interstitials: dict[int, str] = field(default_factory=dict)  # post -> the label(s) covering it
    counts: Counter = field(default_factory=Counter)  # outcome -> candidates


class IntegrityFilterStage:
    name = "integrity"

    def __init__(self, cfg: IntegrityConfig, treatment: bool | None = None):
        """`treatment`: on or off in an experiment's treatment arm (None: as in the control, `cfg`)."""
        self.cfg = cfg
        self.on = {CONTROL: cfg.enabled, TREATMENT: cfg.enabled if treatment is None else treatment}

    def by_outcome(self, labels: frozenset[str], in_network: bool) -> dict[str, list[str]]:
        """Outcome -> the candidate's labels that lead to it, allow left out (so is a label without
        a configured outcome)."""
        out: dict[str, list[str]] = {}
        for x in sorted(labels):
            outcome = self.cfg.outcomes.get(x, ("allow", "allow"))[0 if in_network else 1]
            if outcome != "allow":
                out.setdefault(outcome, []).append(x)
        return out

    def outcomes(self, labels: frozenset[str], in_network: bool) -> set[str]:
        """The outcomes of a candidate's labels (a label without a configured outcome is allowed)."""
        return set(self.by_outcome(labels, in_network))

    def decide(self, posts: np.ndarray, in_network: np.ndarray, labels: dict[int, frozenset[str]]) -> Decision:
        """What the labels do to candidates `posts` (in network or not, aligned)."""
        decision = Decision(np.ones(len(posts), dtype=bool), np.ones(len(posts)))
        where = np.flatnonzero(np.isin(posts, np.fromiter(labels, dtype=np.int64, count=len(labels))))
        for k, inn in zip(where.tolist(), in_network[where].tolist(), strict=True):
            post = int(posts[k])
            outcomes = self.by_outcome(labels[post], inn)
            for outcome in (DROP,) if DROP in outcomes else sorted(outcomes):
                decision.counts[outcome] += 1
            if DROP in outcomes:
                decision.keep[k] = False
                continue
            if DOWNRANK in outcomes:
                decision.factor[k] = self.cfg.downrank
            if INTERSTITIAL in outcomes:
                decision.interstitials[post] = ",".join(outcomes[INTERSTITIAL])
        return decision

    def run(self, query: FeedQuery, state: FeedState) -> None:
        labels = state.labels
        if labels is None:
            if self.on[query.arm] and len(state.candidates):
                state.degraded[self.name] = "labels unread"
            return
        if not self.on[query.arm] or not labels or state.scores is None:
            return
        c = state.candidates
        decision = self.decide(c.post, c.in_network, labels)
        for outcome, n in decision.counts.items():
            state.rescored[(self.name, outcome)] += n
        state.interstitials.update(decision.interstitials)
        state.scores = scaled(state.scores, decision.factor)
        state.remove(decision.keep, self.name)

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass  # every candidate allowed as it is; the response says `degraded: integrity`

