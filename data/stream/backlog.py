"""How far behind the stream's consumers are: a snapshot per consumer group, a Prometheus collector
that takes one at each scrape, and the rule that calls a backlog growing.

A group's backlog is its entries not yet delivered plus those delivered but not yet acknowledged.
A growing backlog means consumers that fall behind: too few of them, a slow dependency, or one that
died with its entries pending.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from data.stream.valkey_stream import GroupLag, ValkeyStream

GROWING_TICKS = 5  # a backlog larger at each of this many observations in a row is growing


@dataclass(frozen=True)
class Backlog:
    entries: int  # held by the stream (not yet trimmed)
    groups: dict[str, GroupLag]

    @classmethod
    def of(cls, stream: ValkeyStream) -> Backlog:
        return cls(stream.length(), stream.lags())


def growing(history: Sequence[int], ticks: int = GROWING_TICKS) -> bool:
    """Whether the last `ticks` observations of a backlog each rose above the one before."""
    recent = list(history)[-(ticks + 1):]
    return len(recent) == ticks + 1 and all(b > a for a, b in zip(recent, recent[1:], strict=False))


class StreamBacklogCollector(Collector):
    """`loupe_stream_entries` and `loupe_stream_backlog{group, state}` (state: undelivered or
    pending), read from the server at each scrape, so they are never stale."""

    def __init__(self, stream: ValkeyStream):
        self.stream = stream

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = Backlog.of(self.stream)
        yield GaugeMetricFamily("loupe_stream_entries", "Entries the event stream holds", value=backlog.entries)
        family = GaugeMetricFamily("loupe_stream_backlog", "Entries a consumer group has not applied yet",
                                   labels=["group", "state"])
        for group, lag in backlog.groups.items():
            family.add_metric([group, "undelivered"], lag.undelivered)
            family.add_metric([group, "pending"], lag.pending)
        yield family
