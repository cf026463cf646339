"""PostHashtags: posts' hashtags for the fatigue rescorer ("posts like this"), read from the search
index and kept in-process for `ttl_s`. The same candidates come back request after request while a
post's hashtags seldom change, so a request asks the index only for the candidates not seen within
`ttl_s` (a query of 1,000 ids costs a few ms); an edit reaches fatigue within `ttl_s`, which a soft
signal can afford. A post the index lacks is
kept as having none, so it is not asked for again within `ttl_s` either."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from cachetools import TTLCache

from candidate_gen.search.post_text_index import SearchIndexReader


class PostHashtags:
    def __init__(self, index: SearchIndexReader, max_posts: int = 200_000, ttl_s: float = 600.0,
                 timer: Callable[[], float] = time.monotonic):
        self.index = index
        self._kept: TTLCache = TTLCache(max_posts, ttl_s, timer=timer)
        self._lock = threading.Lock()  # the service's worker threads share it

    def of(self, posts: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """Post -> its hashtags (lower-cased words; empty when it has none or is not indexed). Raises
        what the index raises (IndexMissing, sqlite3.Error) for posts not kept."""
        with self._lock:
            found = {p: tags for p in posts if (tags := self._kept.get(p)) is not None}
        missing = [p for p in dict.fromkeys(posts) if p not in found]
        if missing:
            read = self.index.hashtags(missing)
            fresh = {p: tuple(read.get(p, ())) for p in missing}
            with self._lock:
                self._kept.update(fresh)
            found.update(fresh)
        return found
