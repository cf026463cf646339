"""The three pipelines the service runs, each one declaration of its stages in the fixed order
(sources → dedupe → filters → hydrator → scorer → rescorers → selector → side effects); Home's and
Explore's rescorers start with the content labels' outcomes (integrity), then feedback fatigue and the
new-author boost; every surface, /v1/rank and the cheap path included, applies the labels' outcomes.
Home and Explore select through the exploration share (a random order on a known share of requests,
with the propensities logged); /v1/rank never explores: its caller composes the page. Each surface
also has a cheap path (serving.admission decides when): its cheapest sources, newest first, through
the same privacy filters, no features and no model.
The components are built once by serving.app and passed in; nothing here decides anything."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.heuristic import HeuristicScorer
from serving.pipeline import RecommendationPipeline, SideEffect, Stage
from serving.stages.author_diversity_rescorer import AuthorDiversityRescorer
from serving.stages.cheap_path import NoHydration, RecencyScorer
from serving.stages.duplicate_post_dedupe import DuplicatePostDedupe
from serving.stages.exploration_shuffle_selector import ExplorationShuffleSelector
from serving.stages.out_of_network_rescorer import OutOfNetworkRescorer
from serving.stages.selectors import HomeMixSelector, RankAllSelector, TopKSelector


@dataclass(frozen=True)
class Components:
    home_sources: Stage
    explore_sources: Stage
    supplied_posts: Stage
    filters: Stage
    hydrator: Stage
    scorer: Stage
    fatigue: Stage  # the first rescorer of Home and Explore (what the viewer pushed away)
    new_author_boost: Stage  # the second: authors with few impressions lifted (cold start)
    # content labels' outcomes (allow, interstitial, downrank, drop), right after the scorer on every
    # surface: a downrank scales the model's score, a drop is a visibility rule the caller cannot lift
    integrity: Stage
    side_effects: tuple[SideEffect, ...]


def home_pipeline(c: Components, out_of_network_share: float, fill: bool, oon_scale: float,
                  author_decay: float, author_floor: float, exploration_share: float = 0.0,
                  rng: np.random.Generator | None = None) -> RecommendationPipeline:
    return RecommendationPipeline(
        surface="home",
        source=c.home_sources,
        dedupe=DuplicatePostDedupe(),
        filters=c.filters,
        hydrator=c.hydrator,
        scorer=c.scorer,
        # The boost is about the candidate's author, as fatigue is: it comes before the page-shaping
        # rescorers (suggested posts scaled down, author diversity), which then see the boosted
        # scores. The numbers would not change in another order (each multiplies, `scaled` keeps the
        # sign, an author's posts share one factor), so a suggested new author's post gets both.
        rescorers=(c.integrity, c.fatigue, c.new_author_boost, OutOfNetworkRescorer(oon_scale),
                   AuthorDiversityRescorer(author_decay, author_floor)),
        selector=ExplorationShuffleSelector(HomeMixSelector(out_of_network_share, fill), exploration_share, rng),
        side_effects=c.side_effects,
    )


def explore_pipeline(c: Components, author_decay: float, author_floor: float, exploration_share: float = 0.0,
                     rng: np.random.Generator | None = None) -> RecommendationPipeline:
    return RecommendationPipeline(
        surface="explore",
        source=c.explore_sources,
        dedupe=DuplicatePostDedupe(),
        filters=c.filters,
        hydrator=c.hydrator,
        scorer=c.scorer,
        rescorers=(c.integrity, c.fatigue, c.new_author_boost, AuthorDiversityRescorer(author_decay, author_floor)),
        selector=ExplorationShuffleSelector(TopKSelector(), exploration_share, rng),
        side_effects=c.side_effects,
    )


def rank_pipeline(c: Components) -> RecommendationPipeline:
    """Scores for candidates the feed service supplies: no rescoring but the labels' outcomes (the
    caller composes the page), no impression log (the caller knows what it serves and logs it)."""
    return RecommendationPipeline(
        surface="rank",
        source=c.supplied_posts,
        dedupe=DuplicatePostDedupe(),
        filters=c.filters,
        hydrator=c.hydrator,
        scorer=c.scorer,
        rescorers=(c.integrity,),
        selector=RankAllSelector(),
    )


def cheap_pipeline(surface: str, source: Stage, c: Components, selector: Stage,
                   heuristic: HeuristicScorer) -> RecommendationPipeline:
    """The overload answer: `source` (the surface's cheapest sources), the same dedupe, privacy
    filters, labels' outcomes and side effects as the full pipeline, the heuristic on the records,
    `selector`."""
    return RecommendationPipeline(
        surface=surface,
        source=source,
        dedupe=DuplicatePostDedupe(),
        filters=c.filters,
        hydrator=NoHydration(),
        scorer=RecencyScorer(heuristic),
        rescorers=(c.integrity,),
        selector=selector,
        side_effects=c.side_effects,
    )
