"""Generated social worlds and their oracle, for the privacy properties: actions (follows, approvals,
blocks, mutes, privacy changes, posts, deletions) as hypothesis strategies, the events they land as,
and an independent, plain-Python replay of the log contract's rules saying who may see what."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.candidates.helpers import HOUR, T0

N_USERS = 8
user_ids = st.integers(1, N_USERS)
pair = st.tuples(user_ids, user_ids).filter(lambda p: p[0] != p[1])
action = st.one_of(
    st.tuples(st.sampled_from(["follow", "follow", "approve", "unfollow"]), pair),
    st.tuples(st.sampled_from(["block", "unblock", "mute", "unmute"]), pair),
    st.tuples(st.just("user"), st.tuples(user_ids, st.booleans())),
    st.tuples(st.just("post"), user_ids),
    st.tuples(st.just("delete"), st.integers(0, 40)),
)


class Oracle:
    """Who may see what, by the contract's rules, replayed in order."""

    def __init__(self, private: set[int]):
        self.private = set(private)
        self.active: set[tuple[int, int]] = set()
        self.pending: set[tuple[int, int]] = set()
        self.blocks: set[tuple[int, int]] = set()
        self.mutes: set[tuple[int, int]] = set()
        self.author: dict[int, int] = {}
        self.deleted: set[int] = set()

    def apply(self, kind: str, a: int, b: int) -> None:
        if kind == "user":
            if b:
                self.private.add(a)
            elif a in self.private:
                self.private.discard(a)
                for v, u in list(self.pending):
                    if u == a:
                        self.pending.discard((v, u))
                        self.active.add((v, u))
        elif kind == "follow" and (a, b) not in self.active:
            (self.pending if b in self.private else self.active).add((a, b))
        elif kind == "approve" and (a, b) in self.pending:
            self.pending.discard((a, b))
            self.active.add((a, b))
        elif kind == "unfollow":
            self.pending.discard((a, b))
            self.active.discard((a, b))
        elif kind in ("block", "mute"):
            (self.blocks if kind == "block" else self.mutes).add((a, b))
        elif kind in ("unblock", "unmute"):
            (self.blocks if kind == "unblock" else self.mutes).discard((a, b))
        elif kind == "post":
            self.author[a] = b
        elif kind == "delete":
            self.deleted.add(a)

    def may_see(self, viewer: int, post: int) -> bool:
        author = self.author[post]
        return (
            post not in self.deleted
            and (viewer, author) not in self.blocks and (author, viewer) not in self.blocks
            and (viewer, author) not in self.mutes
            and (author not in self.private or (viewer, author) in self.active or author == viewer)
        )


def to_events(private: set[int], actions) -> tuple[list[tuple], Oracle]:
    rows = [(T0 - HOUR, "user", u, 0, int(u in private)) for u in range(1, N_USERS + 1)]
    oracle = Oracle(private)
    posts: list[tuple[int, int, int]] = []
    for i, (kind, arg) in enumerate(actions):
        ts = T0 + i * 1000
        if kind == "post":
            post = 1000 + len(posts)
            posts.append((post, arg, ts))
            rows.append((ts, "post", post, arg, ts))
            oracle.apply("post", post, arg)
        elif kind == "delete":
            if not posts:
                continue
            post, author, created = posts[arg % len(posts)]
            rows.append((ts, "delete", post, author, created))
            oracle.apply("delete", post, author)
        elif kind == "user":
            rows.append((ts, "user", arg[0], 0, int(arg[1])))
            oracle.apply("user", arg[0], int(arg[1]))
        else:
            rows.append((ts, kind, arg[0], arg[1], 0))
            oracle.apply(kind, *arg)
    return rows, oracle
