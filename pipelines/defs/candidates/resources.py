"""Candidates resources: the Redis that holds the candidate state, the candidate config, the folder
of the nearest-neighbour indexes."""

from __future__ import annotations

import dagster as dg

from data.settings import Settings


class RedisResource(dg.ConfigurableResource):
    """The Redis that holds the feed caches and Explore sets (the embedded Valkey by default)."""

    url: str

    def client(self):
        """A plain client, or a cluster client if the URL is a cluster node's."""
        from data.redis_client import connect

        return connect(self.url, socket_timeout=30, socket_connect_timeout=5)


class CandidatesDirResource(dg.ConfigurableResource):
    """Where candidate generation keeps files (the nearest-neighbour indexes)."""

    path: str


class CandidateConfigResource(dg.ConfigurableResource):
    """Where the candidate generation config lives (candidate_gen/config.toml by default)."""

    path: str = ""

    def load(self):
        from candidate_gen.config import DEFAULT_PATH, CandidateConfig

        return CandidateConfig.load(self.path or DEFAULT_PATH)


class SearchIndexResource(dg.ConfigurableResource):
    """The post search index file (Settings.search_index_file; candidate_gen/search/)."""

    path: str


def candidate_resources(settings: Settings, redis_url: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The candidates domain's resources, from settings (`redis_url`: see build_resources)."""
    return {
        "redis": RedisResource(url=redis_url or settings.redis_endpoint),
        "candidate_config": CandidateConfigResource(),
        "candidates_dir": CandidatesDirResource(path=str(settings.home / "candidates")),
        "search_index": SearchIndexResource(path=str(settings.search_index_file)),
    }
