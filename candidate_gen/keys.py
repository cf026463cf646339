"""The Redis key layout of candidate generation: one function per key, the only place one is built.

Every key of one account carries the hash tag `{u:<id>}`, so on Redis Cluster all of them live in
the account's slot: a script or multi-key command over one account's keys (its Home cache and its
followees, its posts and its followers, its blocks both ways) runs where they are. Work that spans
accounts (a post fanned out to followers, a follow joining two accounts) is done in steps of one
slot each (candidate_gen.graph, candidate_gen.fanout). Keys shared by everyone (the account and
celebrity sets, tombstones, trending) have no tag: each is one key, so one slot. The same layout
runs on one server, where slots do not matter. docs/feed_cache_format.md is the written spec
(types, members, scores, TTLs, who writes and who reads each key). Every key starts with the
configured prefix so several deployments (or tests) can share a server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "lp:"

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"key prefix {self.prefix!r}: braces would change the keys' hash tags")

    def _user(self, user: int, kind: str) -> str:
        return f"{self.prefix}{{u:{user}}}:{kind}"

    # --- Home: fan-out caches and author posts ------------------------------------------------
    def feed(self, viewer: int) -> str:
        return self._user(viewer, "feed")

    def author_posts(self, author: int) -> str:
        return self._user(author, "posts")

    def post_meta(self, post: int) -> str:
        """b"<author>:<created_ms>": who wrote a post and when, for callers that only know its id
        (the ranking service's /v1/rank). Written with the author post set; expires after max age."""
        return f"{self.prefix}post:{post}"

    def celeb_followees(self, viewer: int) -> str:
        return self._user(viewer, "celebfollowees")

    @property
    def celebs(self) -> str:
        return f"{self.prefix}celebs"

    # --- Stories (candidate_gen.stories) -----------------------------------------------------
    def stories(self, author: int) -> str:
        """The author's stories: story id -> created_at ms; expires a day after its last write."""
        return self._user(author, "stories")

    def stories_seen(self, viewer: int) -> str:
        """The stories the viewer saw; expires 24 h after its last view (every story in it has by then)."""
        return self._user(viewer, "storyseen")

    # --- the social graph as the read path needs it -------------------------------------------
    @property
    def users(self) -> str:
        return f"{self.prefix}users"

    @property
    def private(self) -> str:
        """Every private account: the read path asks it about a page's authors in one command."""
        return f"{self.prefix}private"

    def private_flag(self, user: int) -> str:
        """Present while `user` is private: the same fact in the account's own slot, where a follow
        decides between active and pending atomically with the edge (candidate_gen.graph)."""
        return self._user(user, "private")

    def followers(self, author: int) -> str:
        return self._user(author, "followers")

    def following(self, viewer: int) -> str:
        return self._user(viewer, "following")

    def pending(self, author: int) -> str:
        return self._user(author, "pending")

    def accepted(self, author: int) -> str:
        """Requesters an account accepted by going public whose side of the edge is not yet written."""
        return self._user(author, "accepted")

    def blocks(self, user: int) -> str:
        return self._user(user, "blocks")

    def blocked_by(self, user: int) -> str:
        return self._user(user, "blockedby")

    def mutes(self, user: int) -> str:
        return self._user(user, "mutes")

    # --- filters' state -----------------------------------------------------------------------
    @property
    def tombstones(self) -> str:
        return f"{self.prefix}tomb"

    def seen(self, viewer: int) -> str:
        return self._user(viewer, "seen")

    def fatigue(self, viewer: int) -> str:
        """What the viewer pushed away (candidate_gen.fatigue)."""
        return self._user(viewer, "fatigue")

    @property
    def integrity_posts(self) -> str:
        """Post id -> its content labels (candidate_gen.integrity); one slot with the accounts'."""
        return f"{self.prefix}{{integrity}}:posts"

    @property
    def integrity_accounts(self) -> str:
        """Account id -> its labels, which apply to each of its posts."""
        return f"{self.prefix}{{integrity}}:accounts"

    def integrity_reporters(self, post: int) -> str:
        """Who reported the post, from the stream (candidate_gen.integrity.record_reports)."""
        return f"{self.prefix}{{integrity}}:reporters:{post}"

    # --- Explore sources ----------------------------------------------------------------------
    @property
    def trending(self) -> str:
        return f"{self.prefix}trend:global"

    def trending_tag(self, tag: str) -> str:
        return f"{self.prefix}trend:tag:{tag}"

    def viewer_tags(self, viewer: int) -> str:
        return self._user(viewer, "vtags")

    @property
    def popular(self) -> str:
        return f"{self.prefix}popular"

    def engaged(self, user: int) -> str:
        return self._user(user, "engaged")

    def top_affinity(self, viewer: int) -> str:
        return self._user(viewer, "affinity")

    def viewer_embedding(self, viewer: int) -> str:
        return self._user(viewer, "emb")

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
