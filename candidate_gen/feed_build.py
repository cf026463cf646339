"""Building a viewer's Home cache from its followees' recent posts.

The posts live in each followee's slot and the cache in the viewer's, so the build reads the
posts (one windows call per slot, candidate_gen.reads) and writes the cache in one script call
(`feed_replace.lua`: sentinel, the newest `cap` posts, TTL). Each followee gives at most its newest
`cap` posts within the max age: the cache's newest `cap` are among them. Celebrities' posts are
pulled at read instead (candidate_gen.home).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

from candidate_gen.config import CandidateConfig
from candidate_gen.reads import Reads, WindowRows
from candidate_gen.scripts import Scripts


def posts_read(cfg: CandidateConfig, authors: Iterable[int], oldest_ms: int) -> Reads:
    """The recent posts of a viewer's non-celebrity followees (`authors`), as one window."""
    posts = cfg.keys.author_posts  # cfg.keys builds a Keys each time it is asked
    return Reads().window([posts(int(a)) for a in authors], "+inf", oldest_ms, cfg.feed.cap)


def write(client: Any, scripts: Scripts, cfg: CandidateConfig, viewer: int, rows: WindowRows) -> Any:
    """Replace `viewer`'s cache by `rows` (a `posts_read` window's reply), on a client or queued
    on a pipeline; the number of posts it holds (a pipeline: when executed)."""
    pairs = chain.from_iterable(zip(rows.scores.astype("int64").tolist(),
                                    (b"%d:%d" % pa for pa in zip(rows.post.tolist(), rows.author.tolist()))))
    return scripts.feed_replace(keys=[cfg.keys.feed(viewer)], args=[cfg.feed.cap, cfg.feed.ttl_s, *pairs],
                                 client=client)
