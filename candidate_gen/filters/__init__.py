"""The shared filters of Home and Explore, and the default chain (cheapest first)."""

from __future__ import annotations

import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.filters.already_seen_filter import AlreadySeenFilter
from candidate_gen.filters.base import ChainResult, FilterChain
from candidate_gen.filters.blocked_author_filter import BlockedAuthorFilter
from candidate_gen.filters.deleted_post_filter import DeletedPostFilter
from candidate_gen.filters.integrity_labels import IntegrityLabels
from candidate_gen.filters.max_age_filter import MaxAgeFilter
from candidate_gen.filters.muted_author_filter import MutedAuthorFilter
from candidate_gen.filters.own_post_filter import OwnPostFilter
from candidate_gen.filters.private_author_filter import PrivateAuthorFilter


def default_chain(client: redis.Redis, cfg: CandidateConfig, seen: bool = True, attempts: int = 1,
                  retry_client: redis.Redis | None = None) -> FilterChain:
    """Own posts and age need no state; the rest share one Redis round trip (tried `attempts` times
    at most when it fails, the retries through `retry_client` if given: FilterChain.run)."""
    filters = [
        OwnPostFilter(),
        MaxAgeFilter(cfg),
        DeletedPostFilter(cfg),
        BlockedAuthorFilter(cfg),
        MutedAuthorFilter(cfg),
        PrivateAuthorFilter(cfg),
    ]
    if seen:
        filters.append(AlreadySeenFilter(cfg))
    if cfg.integrity.enabled:
        filters.append(IntegrityLabels(cfg))  # removes nothing: read here, decided by the service
    return FilterChain(client, filters, attempts, retry_client)


def search_chain(client: redis.Redis, cfg: CandidateConfig, attempts: int = 1,
                 retry_client: redis.Redis | None = None) -> FilterChain:
    """Search's: the same privacy filters (deleted, blocked both ways, muted, private-not-approved)
    and own posts, in the same order and one round trip; no age limit and no already-seen (a search
    finds older posts, and posts seen before)."""
    filters = [OwnPostFilter(), DeletedPostFilter(cfg), BlockedAuthorFilter(cfg), MutedAuthorFilter(cfg),
               PrivateAuthorFilter(cfg)]
    if cfg.integrity.enabled:
        filters.append(IntegrityLabels(cfg))  # for search's labels' outcomes, as the feed's
    return FilterChain(client, filters, attempts, retry_client)


def story_chain(client: redis.Redis, cfg: CandidateConfig, attempts: int = 1,
                retry_client: redis.Redis | None = None) -> FilterChain:
    """The Stories tray's: the privacy filters that judge an account (blocked both ways, muted,
    private-not-approved), in the same order and one round trip. A deleted story is removed from
    its author's set, not tombstoned; content labels are the posts'."""
    return FilterChain(client, [BlockedAuthorFilter(cfg), MutedAuthorFilter(cfg), PrivateAuthorFilter(cfg)],
                       attempts, retry_client)


__all__ = ["ChainResult", "FilterChain", "default_chain", "search_chain", "story_chain"]
