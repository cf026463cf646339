"""Every candidate source by name, built over one Redis client and one config: the ranking service,
`make run`'s sample and the candidate benchmark all build their sources here."""

from __future__ import annotations

from typing import Any

from candidate_gen.config import CandidateConfig
from candidate_gen.sources.base import CandidateSource
from candidate_gen.sources.embedding_source import EmbeddingSource, ModelRef
from candidate_gen.sources.in_network_source import InNetworkSource
from candidate_gen.sources.popular_source import PopularSource
from candidate_gen.sources.social_source import SocialSource
from candidate_gen.sources.trending_source import TrendingSource

SOURCE_NAMES = ("in_network", "trending", "embedding", "social", "popular")


def build_sources(client: Any, cfg: CandidateConfig, embeddings: ModelRef,
                  names: tuple[str, ...] = SOURCE_NAMES) -> dict[str, CandidateSource]:
    """The named sources (default: every one), in `names`' order, each with `cfg`'s switch, cap and
    timeout. `embeddings`: the embedding source's index (a model, or a callable returning the
    current one)."""
    make = {
        "in_network": lambda: InNetworkSource(client, cfg),  # its client builds missing caches
        "trending": lambda: TrendingSource(cfg),
        "embedding": lambda: EmbeddingSource(cfg, embeddings),
        "social": lambda: SocialSource(cfg),
        "popular": lambda: PopularSource(cfg),
    }
    unknown = [n for n in names if n not in make]
    if unknown:
        raise ValueError(f"unknown candidate sources {unknown}; choose from {list(make)}")
    return {n: make[n]() for n in names}
