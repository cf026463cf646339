"""NewAuthorBoostRescorer: cold start for authors. An author with fewer than `threshold` impressions
in the last 28 days has their posts' scores raised by

    factor = 1 + strength * (1 - impressions / threshold)      (1 at and above the threshold)

so an author nobody has been shown yet gets x (1 + strength) and the lift fades linearly as they
are seen (X's home mixer lifts authors below ~1,000 impressions into view). Positive and negative
scores alike move up (`scaled`: a negative score is divided by the factor).

The count is the daily author feature `impressions_28d` (features/jobs/author.py), already in the
hydrated block: every ranking feature service holds the `author` view (`author__impressions_28d`),
so the boost costs no read. It is as of the end of the last daily snapshot. Off by default
([new_author_boost] enabled; docs/serving.md "New-author boost" says why).

What it cannot judge, it leaves alone (counted in `state.rescored`, loupe_rescored_total):
- `unknown_author`: no author row (NaN: a snapshot holds every account, so the account is newer
  than the last materialized one, or the online store lacks it) is not zero impressions: no boost.
- `no_signal`: no author of the request has a single impression. That is what an export without an
  impressions log looks like (features.optional_logs: an absent log reads as empty, so every
  author's count is 0): boosting would lift every known author over the unknown ones and tell the
  ranking nothing. On a request where it is true, boosting every known author alike would not
  change their order either, so nothing is lost.
- `not_hydrated` / `no_feature`: no features (hydration degraded), or a feature service without the
  column: nothing to read.
The viewer's own posts never get here (the own-post filter removes them)."""

from __future__ import annotations

import logging

import numpy as np

from features.tables import AUTHOR
from serving.config import NewAuthorBoostConfig
from serving.experiment import CONTROL, TREATMENT
from serving.pipeline import FeedQuery, FeedState
from serving.stages.out_of_network_rescorer import scaled

IMPRESSIONS = f"{AUTHOR.name}__impressions_28d"  # the hydrated block's column (`<view>__<feature>`)

logger = logging.getLogger(__name__)


def boost_factors(impressions: np.ndarray, threshold: float, strength: float) -> np.ndarray:
    """Per candidate: 1 + strength * (1 - impressions / threshold) below the threshold, 1 at and above
    it, 1 where the count is unknown (NaN)."""
    below = np.clip(1.0 - impressions / threshold, 0.0, 1.0)
    return np.where(np.isnan(impressions), 1.0, 1.0 + strength * below)


class NewAuthorBoostRescorer:
    name = "new_author_boost"

    def __init__(self, cfg: NewAuthorBoostConfig, treatment: bool | None = None):
        """`treatment`: on or off in an experiment's treatment arm (None: as in the control, `cfg`)."""
        self.cfg = cfg
        self.on = {CONTROL: cfg.enabled, TREATMENT: cfg.enabled if treatment is None else treatment}
        self._warned = False

    def run(self, query: FeedQuery, state: FeedState) -> None:
        if not self.on[query.arm] or state.scores is None or not len(state.scores):
            return
        n = len(state.scores)
        if state.features is None:
            state.rescored[self.name, "not_hydrated"] += n
            return
        if IMPRESSIONS not in state.feature_names:
            state.rescored[self.name, "no_feature"] += n
            if not self._warned:
                self._warned = True
                logger.warning("new-author boost: the hydrated features have no %s: nothing boosted", IMPRESSIONS)
            return
        impressions = state.features[:, state.feature_names.index(IMPRESSIONS)].astype(np.float64)
        unknown = np.isnan(impressions)
        if not np.any(impressions[~unknown] > 0):
            state.rescored[self.name, "no_signal"] += n
            return
        factor = boost_factors(impressions, self.cfg.threshold, self.cfg.strength)
        state.scores = scaled(state.scores, factor)
        if unknown.any():
            state.rescored[self.name, "unknown_author"] += int(unknown.sum())
        boosted = int((factor > 1.0).sum())
        if boosted:
            state.rescored[self.name, "boosted"] += boosted

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        pass  # scores stay as they were
