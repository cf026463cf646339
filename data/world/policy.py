"""The logging policy ("logging_policy_v0"): who opens the app when, and what they are shown.

Home: recent posts (last `home_window_days`) of accounts the viewer visibly follows (never
blocked or muted authors, never private authors who have not approved the viewer, never posts
deleted that day), newest first with a couple of hours of jitter, plus a few out-of-network
suggestions slotted in (posts of celebrities the viewer does not follow, and popular posts); when
the in-network supply runs out the rest of the feed is suggestions. Explore: recent public posts of
accounts the viewer does not follow, drawn popularity-weighted (explore_popular) or uniformly
(explore_random). Nothing seen on the previous two days is shown again.

The policy only uses observable signals (follows, engagement counts, follower counts), never the
hidden truth, so the logs carry the usual logging-policy bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.days import DAY_MS, HOUR_MS
from data.world.config import WorldConfig
from data.world.content import Posts
from data.world.graph import GraphState, Users
from data.world.util import (
    csr,
    expand,
    first_occurrence,
    isin_sorted,
    local_to_utc_in_day,
    pair_key,
    rank_in_groups,
    sample_local_ms,
    unique_sorted,
)

HOME, EXPLORE = 0, 1  # data.columns.SURFACES order
IN_NETWORK, CELEBRITY, EXPLORE_POPULAR, EXPLORE_RANDOM = 0, 1, 2, 3  # realise.IMPRESSION_SOURCES order
MODEL_VERSION = "logging_policy_v0"
CHRONO_JITTER_MS = 2 * HOUR_MS  # "newest first", loosely
MAX_FEED = 60


@dataclass
class Pool:
    """Posts sorted by creation time, with cumulative sampling weights."""

    post: np.ndarray
    created: np.ndarray
    cdf: np.ndarray

    @staticmethod
    def build(post: np.ndarray, created: np.ndarray, weight: np.ndarray) -> Pool:
        order = np.argsort(created, kind="stable")
        return Pool(post[order], created[order], np.cumsum(weight[order]))


@dataclass
class DayPools:
    day: int
    day_start: int
    day_end: int
    feed_indptr: np.ndarray  # viewer -> range in feed_dst (visible, not blocked/muted follows)
    feed_dst: np.ndarray
    home_post: np.ndarray  # recent posts grouped by author, newest window only
    author_ptr: np.ndarray  # author -> range in home_post
    explore: Pool  # popularity-weighted
    explore_uniform: Pool
    celebrity: Pool
    seen_keys: np.ndarray  # pair_key(viewer, post) served on the previous two days


def build_pools(
    cfg: WorldConfig,
    day: int,
    day_start: int,
    users: Users,
    posts: Posts,
    graph: GraphState,
    post_engagements: np.ndarray,
    seen_keys: np.ndarray,
) -> DayPools:
    day_end = day_start + DAY_MS
    ids = np.arange(1, posts.n + 1)
    alive = posts.deleted_ms[ids] >= day_end  # a post deleted today is not served at all today
    recent = (posts.created_ms[ids] >= day_start - int(cfg.home_window_days * DAY_MS)) & (
        posts.created_ms[ids] < day_end
    )
    home = ids[alive & recent]
    order = np.lexsort((posts.created_ms[home], posts.author[home]))
    home = home[order]
    author_ptr = csr(posts.author[home], users.n + 1)

    indptr, dst = graph.feed_edges()
    in_degree = graph.in_degree()
    public = ~users.is_private
    ex_recent = posts.created_ms[ids] >= day_start - int(cfg.explore_window_days * DAY_MS)
    ex = ids[alive & recent & ex_recent & public[posts.author[ids]]]
    pop = (1.0 + post_engagements[ex]) ** 0.9 * (1.0 + in_degree[posts.author[ex]]) ** 0.25
    # "Celebrity" suggestions: posts of the most followed public accounts.
    k = max(10, users.n // 500)
    top = np.argsort(-(in_degree * public), kind="stable")[:k]
    is_top = np.zeros(users.n + 1, bool)
    is_top[top] = True
    ce = ex[is_top[posts.author[ex]]]
    return DayPools(
        day=day,
        day_start=day_start,
        day_end=day_end,
        feed_indptr=indptr,
        feed_dst=dst,
        home_post=home,
        author_ptr=author_ptr,
        explore=Pool.build(ex, posts.created_ms[ex], pop),
        explore_uniform=Pool.build(ex, posts.created_ms[ex], np.ones(len(ex))),
        celebrity=Pool.build(ce, posts.created_ms[ce], np.ones(len(ce))),
        seen_keys=seen_keys,
    )


@dataclass
class Sessions:
    viewer: np.ndarray
    start: np.ndarray
    surface: np.ndarray
    length: np.ndarray  # items the viewer will scroll through


def make_sessions(
    rng: np.random.Generator, cfg: WorldConfig, users: Users, viewers: np.ndarray, pools: DayPools
) -> Sessions:
    """Who opens the app today and when; heavy users open it several times."""
    viewers = viewers[users.created_ms[viewers] < pools.day_end]
    newbie = users.signup_day[viewers] == pools.day
    p_active = np.where(newbie, np.maximum(users.active_p[viewers], 0.8), users.active_p[viewers])
    v = viewers[rng.random(len(viewers)) < p_active]
    k = 1 + rng.poisson(users.extra_sessions[v])
    sv = np.repeat(v, k)
    start = pools.day_start + local_to_utc_in_day(
        sample_local_ms(rng, len(sv)), users.utc_offset_min[sv]
    )
    born = users.created_ms[sv]
    # A new account's sessions come after its sign-up.
    early = start <= born
    start[early] = (
        born[early]
        + 1
        + (rng.random(int(early.sum())) * (pools.day_end - 1 - born[early])).astype(np.int64)
    )
    surface = (rng.random(len(sv)) < users.explore_p[sv]).astype(np.int64)
    depth = rng.geometric(1.0 / users.scroll_mean[sv])
    length = np.minimum(np.where(surface == EXPLORE, 6, 3) + depth, MAX_FEED)
    order = np.lexsort((start, sv))
    return Sessions(sv[order], start[order], surface[order], length[order])


@dataclass
class Served:
    """One row per impression: session index, post, position (0-based), source."""

    session: np.ndarray
    post: np.ndarray
    position: np.ndarray
    source: np.ndarray


def _filter_out_of_network(viewer, post, posts: Posts, graph: GraphState, seen_keys) -> np.ndarray:
    author = posts.author[post]
    return (
        (author != viewer)
        & ~graph.has_follow(pair_key(viewer, author))
        & ~graph.hidden(viewer, author)
        & ~isin_sorted(seen_keys, pair_key(viewer, post))
    )


def _draw(
    rng, pool: Pool, start: np.ndarray, window_ms: int, weighted: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One post per row from pool posts created in [start - window, start); (post, ok)."""
    if len(pool.post) == 0:
        return np.zeros(len(start), np.int64), np.zeros(len(start), bool)
    lo = np.searchsorted(pool.created, start - window_ms, side="left")
    hi = np.searchsorted(pool.created, start, side="left")
    ok = hi > lo
    u = rng.random(len(start))
    if weighted:
        base = np.where(lo > 0, pool.cdf[np.maximum(lo - 1, 0)], 0.0)
        top = pool.cdf[np.maximum(hi - 1, 0)]
        idx = np.searchsorted(pool.cdf, base + u * (top - base), side="right")
    else:
        idx = lo + (u * (hi - lo)).astype(np.int64)
    idx = np.clip(idx, lo, np.maximum(hi - 1, lo))
    return pool.post[np.minimum(idx, len(pool.post) - 1)], ok


def _out_of_network(rng, sess_idx, need, sessions, pools, posts, graph, window_ms, mix):
    """Up to `need[i]` distinct out-of-network posts for session sess_idx[i].

    mix: ((pool, weighted, source, share), ...). Returns (session, post, source, order).
    """
    n_draw = 2 * need + 4  # oversample: some draws get filtered out
    owner = np.repeat(sess_idx, n_draw)
    start = sessions.start[owner]
    which = rng.random(len(owner))
    post = np.zeros(len(owner), np.int64)
    ok = np.zeros(len(owner), bool)
    source = np.zeros(len(owner), np.int64)
    lo = 0.0
    for pool, weighted, src, share in mix:
        rows = np.flatnonzero((which >= lo) & (which < lo + share))
        lo += share
        post[rows], ok[rows] = _draw(rng, pool, start[rows], window_ms, weighted)
        source[rows] = src
    ok &= _filter_out_of_network(sessions.viewer[owner], post, posts, graph, pools.seen_keys)
    draw = np.arange(len(owner))
    owner, post, source, draw = owner[ok], post[ok], source[ok], draw[ok]
    # First draw of each (session, post) wins.
    first = first_occurrence(pair_key(owner, post))
    owner, post, source = owner[first], post[first], source[first]
    rank = rank_in_groups(owner)
    want = np.zeros(len(sessions.viewer), np.int64)
    want[sess_idx] = need
    keep = rank < want[owner]
    return owner[keep], post[keep], source[keep], rank[keep]


def serve(
    rng: np.random.Generator,
    cfg: WorldConfig,
    sessions: Sessions,
    pools: DayPools,
    posts: Posts,
    graph: GraphState,
) -> Served:
    n_sess = len(sessions.viewer)
    home = np.flatnonzero(sessions.surface == HOME)
    explore = np.flatnonzero(sessions.surface == EXPLORE)
    home_window = int(cfg.home_window_days * DAY_MS)
    explore_window = int(cfg.explore_window_days * DAY_MS)

    # --- Home, in-network: candidates per viewer, consumed session by session -------------------
    base_sugg = rng.binomial(3, 0.4, len(home))
    slots = np.maximum(sessions.length[home] - base_sugg, 1)
    hv = sessions.viewer[home]
    uv = unique_sorted(hv)
    e_owner, e_idx = expand(
        pools.feed_indptr[uv], pools.feed_indptr[uv + 1] - pools.feed_indptr[uv]
    )
    followee = pools.feed_dst[e_idx]
    c_edge, c_idx = expand(
        pools.author_ptr[followee], pools.author_ptr[followee + 1] - pools.author_ptr[followee]
    )
    cand_v = e_owner[c_edge]  # index into uv, ascending
    cand_post = pools.home_post[c_idx]
    fresh = ~isin_sorted(pools.seen_keys, pair_key(uv[cand_v], cand_post))
    cand_v, cand_post = cand_v[fresh], cand_post[fresh]
    cand_created = posts.created_ms[cand_post]
    cand_ptr = csr(cand_v, len(uv))
    shown = np.zeros(len(cand_post), bool)
    h_rank = rank_in_groups(hv)  # k-th Home session of its viewer today
    h_uv = np.searchsorted(uv, hv)
    parts_s, parts_p, parts_r = [], [], []
    for k in range(int(h_rank.max()) + 1 if len(h_rank) else 0):  # a handful of rounds, not rows
        s = np.flatnonzero(h_rank == k)
        owner, ci = expand(cand_ptr[h_uv[s]], cand_ptr[h_uv[s] + 1] - cand_ptr[h_uv[s]])
        st = sessions.start[home[s]][owner]
        created = cand_created[ci]
        ok = ~shown[ci] & (created < st) & (created >= st - home_window)
        owner, ci, created = owner[ok], ci[ok], created[ok]
        score = created + rng.normal(0.0, CHRONO_JITTER_MS, len(ci))
        order = np.lexsort((-score, owner))
        owner, ci = owner[order], ci[order]
        r = rank_in_groups(owner)
        take = r < slots[s][owner]
        shown[ci[take]] = True
        parts_s.append(home[s][owner[take]])
        parts_p.append(cand_post[ci[take]])
        parts_r.append(r[take].astype(np.float64))
    in_s = np.concatenate(parts_s) if parts_s else np.zeros(0, np.int64)
    in_p = np.concatenate(parts_p) if parts_p else np.zeros(0, np.int64)
    in_key = np.concatenate(parts_r) if parts_r else np.zeros(0)

    # --- Home, suggestions: a few slotted in, and the rest of the feed once in-network runs dry ---
    n_in = np.bincount(in_s, minlength=n_sess)[home]
    need = sessions.length[home] - n_in
    mix = ((pools.celebrity, False, CELEBRITY, 0.4), (pools.explore, True, EXPLORE_POPULAR, 0.6))
    sg_s, sg_p, sg_src, sg_rank = _out_of_network(
        rng, home, need, sessions, pools, posts, graph, explore_window, mix
    )
    n_base = np.zeros(n_sess, np.int64)
    n_base[home] = base_sugg
    slot = 2 + 4 * sg_rank + rng.integers(0, 3, len(sg_rank)) - 0.5
    sg_key = np.where(sg_rank < n_base[sg_s], slot, 1000.0 + sg_rank)

    # --- Explore ----------------------------------------------------------------------------------
    mix = (
        (pools.explore, True, EXPLORE_POPULAR, 0.7),
        (pools.explore_uniform, False, EXPLORE_RANDOM, 0.3),
    )
    ex_s, ex_p, ex_src, ex_rank = _out_of_network(
        rng, explore, sessions.length[explore], sessions, pools, posts, graph, explore_window, mix
    )

    session = np.concatenate([in_s, sg_s, ex_s])
    post = np.concatenate([in_p, sg_p, ex_p])
    source = np.concatenate([np.full(len(in_s), IN_NETWORK), sg_src, ex_src])
    key = np.concatenate([in_key, sg_key, ex_rank.astype(np.float64)])
    order = np.lexsort((key, session))
    session, post, source = session[order], post[order], source[order]
    return Served(session, post, rank_in_groups(session), source)
