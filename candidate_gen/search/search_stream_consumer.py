"""SearchIndexStreamConsumer: keeps the search index up to date from the event stream, between the
daily builds from the lake (docs/event_stream.md, docs/serving.md "Search").

A consumer of its own group, `search`, beside the fan-out worker's: the fan-out worker keeps only a
post's ids and times (its feed caches hold no text), and the index is a file on the serving host,
which the fan-out worker (one per partition set, anywhere) does not write. Each poll reads a batch
of the owned partitions (what a dead consumer left pending first), judges every posts line by
ingestion's own line rules (data/ingest/line_rules.py) against its arrival day, upserts the new
posts and removes the deleted ones in one SQLite transaction, then acknowledges the batch. Every
write is idempotent, so an entry delivered twice changes nothing. A post's creation and deletion are
keyed by the post id, so they share a partition and come in order; and a creation delivered after
its deletion is not indexed anyway (the index remembers deletions).

Lines of other logs are ignored. A posts line ingestion would quarantine is skipped and counted
(`unreadable`): the fan-out worker dead-letters the same line with its reason.
The group holds back the stream's trimming while it has entries pending (as every group does): a
search worker stopped for good should have its group removed (`XGROUP DESTROY`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from candidate_gen.search.post_text_index import PostText, PostTextIndex
from data import columns as c
from data.contracts import POSTS
from data.ingest.line_rules import LineRules
from data.redis_client import FAILURES, is_outage
from data.stream.entries import Entry
from data.stream.leases import PartitionLeases
from data.stream.valkey_stream import ValkeyStream
from data.vocabulary import load_vocabulary

log = logging.getLogger(__name__)

GROUP = "search"


@dataclass
class SearchPollStats:
    entries: int = 0
    posts: int = 0  # creations applied (upserted, or already there)
    deletes: int = 0  # deletions applied
    ignored: int = 0  # entries of other logs
    unreadable: Counter = field(default_factory=Counter)  # reason -> posts lines skipped

    @property
    def reconciles(self) -> bool:
        return self.entries == self.posts + self.deletes + self.ignored + sum(self.unreadable.values())


class SearchIndexStreamConsumer:
    def __init__(self, stream: ValkeyStream, index: PostTextIndex, name: str = "search-1", batch: int = 500,
                 partitions: Sequence[int] | None = None):
        self.stream, self.index, self.name, self.batch = stream, index, name, batch
        self.partitions = list(range(stream.partitions) if partitions is None else partitions)
        self.rules = LineRules(POSTS, load_vocabulary())
        self._leases = PartitionLeases(stream, GROUP, self.partitions, "search index worker")
        stream.create_group(GROUP)  # from the start: every event the stream still holds

    def close(self) -> None:
        self._leases.release()

    def poll(self, block_ms: int | None = None) -> SearchPollStats:
        self._leases.hold()
        entries, _ = self.stream.next_batch(GROUP, self.name, self.batch, block_ms, self.partitions)
        stats = self.apply(entries)
        self.stream.ack(GROUP, entries)  # after the effects: a crash before this re-delivers the batch
        return stats

    def apply(self, entries: list[Entry]) -> SearchPollStats:
        stats = SearchPollStats(entries=len(entries))
        made: list[PostText] = []
        gone: list[tuple[int, int]] = []
        for entry in entries:
            if entry.log != POSTS.name:
                stats.ignored += 1
                continue
            checked = self.rules.check(entry.line, entry.day)
            if checked.reason is not None:
                stats.unreadable[checked.reason] += 1
                continue
            row = dict(zip(POSTS.column_names, checked.values, strict=True))
            if row[c.DELETED_AT] is not None:
                gone.append((row[c.POST_ID], row[c.DELETED_AT] // 1000))
            else:
                made.append(PostText(row[c.POST_ID], row[c.AUTHOR_ID], row[c.CREATED_AT] // 1000,
                                     row[c.HASHTAGS], row[c.CAPTION]))
        # in stream order within a batch: creations first, then deletions (a deletion always wins)
        if made:
            self.index.upsert(made)
        if gone:
            self.index.delete(gone)
        stats.posts, stats.deletes = len(made), len(gone)
        return stats

    def run(self, stop: threading.Event, block_ms: int = 1_000, retry_s: float = 1.0) -> None:
        """Poll until `stop`; a stream server down is waited out (the batch it interrupted was not
        acknowledged: the next poll reclaims it)."""
        down = False
        try:
            while not stop.is_set():
                try:
                    self.poll(block_ms)
                except FAILURES as exc:
                    if not is_outage(exc):
                        raise
                    if not down:
                        log.warning("search index worker %s: the stream is unavailable (%s); retrying", self.name, exc)
                    down = True
                    stop.wait(retry_s)
                    continue
                down = False
        finally:
            self.close()
