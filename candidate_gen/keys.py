"""The Redis key layout of candidate generation: one function per key, the only place Python builds one.

The graph and feed scripts (candidate_gen/lua/: common, follow, approve, unfollow, user,
fanout_post, feed_build) build the same names themselves from the prefix they are passed, because
a script derives keys no caller can pass it (each follower's feed, each followee's posts): a key
renamed here must be renamed there too. docs/feed_cache_format.md is the written spec of both (types,
members, scores, TTLs, who writes and who reads each key). Every key starts with the configured
prefix so several deployments (or tests) can share one server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "lp:"

    # --- Home: fan-out caches and author posts ------------------------------------------------
    def feed(self, viewer: int) -> str:
        return f"{self.prefix}feed:{viewer}"

    def author_posts(self, author: int) -> str:
        return f"{self.prefix}posts:{author}"

    def post_meta(self, post: int) -> str:
        """b"<author>:<created_ms>": who wrote a post and when, for callers that only know its id
        (the ranking service's /v1/rank). Written with the author post set; expires after max age."""
        return f"{self.prefix}post:{post}"

    def celeb_followees(self, viewer: int) -> str:
        return f"{self.prefix}celebfollowees:{viewer}"

    @property
    def celebs(self) -> str:
        return f"{self.prefix}celebs"

    # --- the social graph as the read path needs it -------------------------------------------
    @property
    def users(self) -> str:
        return f"{self.prefix}users"

    @property
    def private(self) -> str:
        return f"{self.prefix}private"

    def followers(self, author: int) -> str:
        return f"{self.prefix}followers:{author}"

    def following(self, viewer: int) -> str:
        return f"{self.prefix}following:{viewer}"

    def pending(self, author: int) -> str:
        return f"{self.prefix}pending:{author}"

    def blocks(self, user: int) -> str:
        return f"{self.prefix}blocks:{user}"

    def blocked_by(self, user: int) -> str:
        return f"{self.prefix}blockedby:{user}"

    def mutes(self, user: int) -> str:
        return f"{self.prefix}mutes:{user}"

    # --- filters' state -----------------------------------------------------------------------
    @property
    def tombstones(self) -> str:
        return f"{self.prefix}tomb"

    def seen(self, viewer: int) -> str:
        return f"{self.prefix}seen:{viewer}"

    # --- Explore sources ----------------------------------------------------------------------
    @property
    def trending(self) -> str:
        return f"{self.prefix}trend:global"

    def trending_tag(self, tag: str) -> str:
        return f"{self.prefix}trend:tag:{tag}"

    def viewer_tags(self, viewer: int) -> str:
        return f"{self.prefix}vtags:{viewer}"

    @property
    def popular(self) -> str:
        return f"{self.prefix}popular"

    def engaged(self, user: int) -> str:
        return f"{self.prefix}engaged:{user}"

    def top_affinity(self, viewer: int) -> str:
        return f"{self.prefix}affinity:{viewer}"

    def viewer_embedding(self, viewer: int) -> str:
        return f"{self.prefix}emb:viewer:{viewer}"

    # --- bookkeeping --------------------------------------------------------------------------
    def checkpoint(self, worker: str) -> str:
        return f"{self.prefix}ckpt:{worker}"

    @property
    def meta(self) -> str:
        return f"{self.prefix}meta"

    @property
    def pattern(self) -> str:
        """Every key of this layout (for a full rebuild's flush)."""
        return f"{self.prefix}*"
