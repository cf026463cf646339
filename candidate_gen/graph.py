"""Account and follow-graph events applied to Redis in stream order, one slot per step.

An edge v -> a has two sides in two accounts' slots: the author's (a's followers, pending requests,
private flag, posts) and the follower's (v's followees, celebrity followees, Home cache). A batch
is applied in two round trips:
1. the author's side of every event, in stream order (`edge_*.lua`, `account.lua`): whether the
   edge is active, pending or ended is decided there, atomically with the privacy flag it reads,
   and the reply carries the author's recent posts when the follower's cache needs them;
2. the follower's side of every edge step 1 left active or inactive (`viewer_*.lua`): followees,
   the celebrity pull list, and the backfill or removal of the author's posts in v's cache.
The follower's side is written from the edge's state after step 1, not from whether step 1
changed it, so a batch redone after a failure between the steps repairs it. Until then, a follow
or an approval interrupted between the steps hides the author's posts from v (a private author's
too), never shows them early; an interrupted unfollow is as if v unfollowed a moment later (v's
own choice, not a withdrawal of access: removing access is a block, a write of its own). Blocks
and mutes are plain set writes.

On one server the steps run the same way: the layout does not depend on the deployment.
"""

from __future__ import annotations

from typing import Any

from candidate_gen import events as ev
from candidate_gen.keys import Keys
from candidate_gen.scripts import Scripts

# reply codes of the author's side that the follower's side and the worker's counts tell apart
# (edge_*.lua: 1 active now, 0 already active, 2 pending; an approve: 3 already active, 0 no request)
PENDING, APPROVED_ALREADY = 2, 3


class GraphWriter:
    """`backfill=False`: no Home cache exists to backfill (a rebuild's replay builds them after), so
    the author's side returns no posts. Scripts are queued as plain EVALSHA commands (`queue`): the
    fan-out worker registers them again on NOSCRIPT and redoes the batch."""

    def __init__(self, client: Any, keys: Keys, scripts: Scripts, cap: int, backfill: bool = True):
        self.client, self.keys, self.scripts, self.cap, self.backfill = client, keys, scripts, cap, backfill

    def apply(self, events: list[tuple[str, int, int, int]], celebs: set[int]) -> list[Any]:
        """Apply (kind, a, b, x) events in order (the fan-out worker's columns). Returns each
        event's author-side reply code (an account event: how many requests it accepted; blocks
        and mutes: None)."""
        keys, s = self.keys, self.scripts
        author_side = self.client.pipeline(transaction=False)
        at: list[int | None] = []
        for kind, a, b, x in events:
            if kind == "user":
                author_side.sadd(keys.users, a)
                (author_side.sadd if x else author_side.srem)(keys.private, a)
                s.account.queue(author_side, [keys.private_flag(a), keys.pending(a), keys.followers(a),
                                              keys.accepted(a), keys.author_posts(a)],
                                [int(bool(x)), self._posts_wanted(a, celebs)])
            elif kind in ev.GRAPH_KINDS:  # a: the follower, b: the author
                edge = [keys.followers(b), keys.pending(b)]
                if kind == "follow":
                    edge.append(keys.private_flag(b))
                edge.append(keys.author_posts(b))
                # an unfollow's posts leave v's cache whoever wrote them (celebrities too)
                posts = int(self.backfill) if kind == "unfollow" else self._posts_wanted(b, celebs)
                getattr(s, f"edge_{kind}").queue(author_side, edge, [a, posts])
            else:
                _block_event(author_side, keys, kind, a, b)
                at.append(None)
                continue
            at.append(len(author_side) - 1)
        replies = author_side.execute() if len(author_side) else []

        follower_side = self.client.pipeline(transaction=False)
        codes: list[Any] = []
        accepted_by: list[int] = []
        for (kind, a, b, _), i in zip(events, at, strict=True):
            if i is None:
                codes.append(None)
                continue
            if kind == "user":
                who, posts = replies[i]
                for v in who:
                    self._follow(follower_side, int(v), a, posts, celebs)
                if who:
                    accepted_by.append(a)
                codes.append(len(who))
                continue
            code, posts = replies[i]
            if kind == "unfollow":
                s.viewer_unfollow.queue(follower_side, self._follower_keys(a), [b, *posts])
            elif code != PENDING and not (kind == "approve" and code == 0):
                self._follow(follower_side, a, b, posts, celebs)
            codes.append(code)
        if len(follower_side):
            follower_side.execute()
        if accepted_by:  # their followers' sides are written: a replay no longer needs them
            self.client.delete(*(keys.accepted(u) for u in accepted_by))
        return codes

    def _follower_keys(self, v: int) -> list[str]:
        return [self.keys.following(v), self.keys.celeb_followees(v), self.keys.feed(v)]

    def _follow(self, pipe: Any, v: int, a: int, posts: list, celebs: set[int]) -> None:
        self.scripts.viewer_follow.queue(pipe, self._follower_keys(v), [a, int(a in celebs), self.cap, *posts])

    def _posts_wanted(self, author: int, celebs: set[int]) -> int:
        """A celebrity's posts are pulled at read, never copied into caches."""
        return int(self.backfill and author not in celebs)


def _block_event(pipe: Any, keys: Keys, kind: str, a: int, b: int) -> None:
    if kind == "block":
        pipe.sadd(keys.blocks(a), b)
        pipe.sadd(keys.blocked_by(b), a)
    elif kind == "unblock":
        pipe.srem(keys.blocks(a), b)
        pipe.srem(keys.blocked_by(b), a)
    elif kind == "mute":
        pipe.sadd(keys.mutes(a), b)
    else:
        pipe.srem(keys.mutes(a), b)
