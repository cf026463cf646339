"""Users and the social graph: who exists, who follows, blocks and mutes whom.

Ids are array indices: user 0 is a never-used placeholder so `users.x[user_id]` needs no
translation. Accounts created later get larger ids (like an auto-increment column), and future
sign-ups are drawn up front so every random draw is fixed by the seed alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.days import DAY_MS
from data.world.config import WorldConfig
from data.world.util import (
    first_occurrence,
    in_set,
    isin_sorted,
    key_dst,
    key_src,
    local_to_utc_in_day,
    pair_key,
    rng_for,
    sample_local_ms,
    sorted_union,
    unique_sorted,
)

# (country, UTC offset in minutes, share of users). Offsets drive the diurnal cycle in UTC.
COUNTRIES = (
    ("US", -300, 0.20),
    ("BR", -180, 0.11),
    ("IN", 330, 0.12),
    ("ID", 420, 0.07),
    ("MX", -360, 0.05),
    ("GB", 0, 0.05),
    ("DE", 60, 0.04),
    ("FR", 60, 0.04),
    ("JP", 540, 0.04),
    ("TR", 180, 0.04),
    ("PH", 480, 0.04),
    ("IT", 60, 0.03),
    ("ES", 60, 0.03),
    ("KR", 540, 0.02),
    ("NG", 60, 0.02),
    ("AR", -180, 0.02),
    ("CA", -300, 0.03),
    ("AU", 600, 0.02),
    ("EG", 120, 0.03),
)
COUNTRY_CODES = tuple(c for c, _, _ in COUNTRIES)
_OFFSETS = np.array([o for _, o, _ in COUNTRIES], dtype=np.int64)
_SHARES = np.array([s for _, _, s in COUNTRIES]) / sum(s for _, _, s in COUNTRIES)
NO_COUNTRY = -1  # the export leaves country null for a few accounts
# Preferential attachment: weight (followers + PA_OFFSET)**PA_POWER * fitness (lognormal, sigma
# FITNESS_SIGMA), damped past CAP_SHARE * top_celebrity_share * users followers. Slightly
# sub-linear so a few hundred accounts (not one) soak up the tail; tuned so the top 1% of accounts
# hold ~50% of follows on 100k users (~9% on tiny, where 1% is only 20 accounts).
PA_OFFSET, PA_POWER, FITNESS_SIGMA, CAP_SHARE = 1.0, 0.9, 1.0, 0.5


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    """Lognormal draws with the given arithmetic mean (heavy right tail)."""
    return rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n)


def dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray, n: int) -> np.ndarray:
    """n sparse Dirichlet rows; gamma draws with a floor so tiny alphas never give 0/0."""
    g = rng.gamma(np.broadcast_to(alpha, (n, len(alpha))), 1.0) + 1e-9
    return (g / g.sum(axis=1, keepdims=True)).astype(np.float32)


def topic_popularity(n_topics: int) -> np.ndarray:
    pop = 1.0 / np.arange(1, n_topics + 1) ** 0.6  # some topics (food, travel) are mainstream
    return pop / pop.sum()


@dataclass
class Users:
    """Every account of the world, including future sign-ups; arrays indexed by user id."""

    n: int  # highest user id; ids are 1..n
    n_initial: int  # ids 1..n_initial exist before WORLD_START
    created_ms: np.ndarray
    signup_day: np.ndarray  # -1 for accounts that predate the world
    country: np.ndarray  # index into COUNTRY_CODES, or NO_COUNTRY
    utc_offset_min: np.ndarray
    is_private: np.ndarray
    is_verified: np.ndarray
    celebrity_rank: np.ndarray  # 1 = most followed celebrity, 0 = not a celebrity
    interests: np.ndarray  # (n+1, T) what a viewer likes
    author_topics: np.ndarray  # (n+1, T) what an author posts about
    author_quality: np.ndarray
    post_rate: np.ndarray  # posts per day
    media_pref: np.ndarray  # (n+1, 3) photo / video / carousel
    active_p: np.ndarray  # chance of opening the app on a day
    extra_sessions: np.ndarray  # Poisson mean of sessions beyond the first
    scroll_mean: np.ndarray  # mean items a viewer scrolls through in a session
    explore_p: np.ndarray  # chance a session opens Explore
    propensity: np.ndarray  # general eagerness to engage (logit offset)
    negativity: np.ndarray  # eagerness to hide/report (logit offset)
    fitness: np.ndarray  # intrinsic attractiveness in preferential attachment
    out_degree: np.ndarray  # how many accounts the user wants to follow

    @property
    def ids(self) -> np.ndarray:
        return np.arange(1, self.n + 1)

    @property
    def is_celebrity(self) -> np.ndarray:
        return self.celebrity_rank > 0


def make_users(cfg: WorldConfig, seed: int, start_ms: int) -> Users:
    rng = rng_for(seed, "users")
    n0, t = cfg.n_users, cfg.n_topics
    signups = rng.poisson(cfg.signups_per_day, cfg.days)
    n = n0 + int(signups.sum())

    # Existing accounts: 4 days to 4 years old, skewed towards recent; ids follow creation order.
    age_ms = ((4 + 1456 * rng.beta(1.0, 1.6, n0)) * DAY_MS).astype(np.int64)
    created = np.sort(start_ms - age_ms)
    country = rng.choice(len(COUNTRIES), size=n, p=_SHARES)
    offsets = _OFFSETS[country]
    # Sign-ups: diurnal in their local time, sorted within the day so ids follow created_at.
    bounds = n0 + np.concatenate([[0], np.cumsum(signups)])
    new_created = np.zeros(n - n0, dtype=np.int64)
    for d in range(cfg.days):  # one iteration per day, not per user
        lo, hi = bounds[d], bounds[d + 1]
        local = sample_local_ms(rng, hi - lo)
        ms = start_ms + d * DAY_MS + local_to_utc_in_day(local, offsets[lo:hi])
        order = np.argsort(ms, kind="stable")
        new_created[lo - n0 : hi - n0] = ms[order]
        country[lo:hi], offsets[lo:hi] = country[lo:hi][order], offsets[lo:hi][order]
    created = np.concatenate([created, new_created])
    country = np.where(rng.random(n) < 0.03, NO_COUNTRY, country)  # left blank by some users
    signup_day = np.concatenate([np.full(n0, -1), np.repeat(np.arange(cfg.days), signups)]).astype(
        np.int64
    )

    def pad(x: np.ndarray, fill=0) -> np.ndarray:  # prepend the placeholder user 0
        return np.concatenate([np.full((1, *x.shape[1:]), fill, dtype=x.dtype), x])

    # Celebrities: a handful of pre-existing accounts, ranked; public and mostly verified.
    n_celeb = min(cfg.celebrity_count, n0)
    celeb_ids = rng.choice(n0, size=n_celeb, replace=False)
    celebrity_rank = np.zeros(n, dtype=np.int64)
    celebrity_rank[celeb_ids] = np.arange(1, n_celeb + 1)
    is_celeb = celebrity_rank > 0
    is_private = (rng.random(n) < cfg.private_share) & ~is_celeb
    is_verified = np.where(is_celeb, rng.random(n) < 0.9, rng.random(n) < 0.003)

    pop = topic_popularity(t)
    interests = dirichlet_rows(rng, 0.12 * t * pop, n)
    # Authors post about a focused mix that overlaps what they themselves like.
    own = dirichlet_rows(rng, 0.06 * t * pop, n)
    author_topics = (0.6 * own + 0.4 * interests).astype(np.float32)
    author_quality = rng.normal(0.0, 0.5, n) + 0.4 * is_celeb
    fitness = rng.lognormal(0.0, FITNESS_SIGMA, n)
    lurker = rng.random(n) < 0.3
    # Attractive accounts (more followers) also post more, as creators do.
    creator = fitness**0.5 / np.exp(FITNESS_SIGMA**2 / 8)
    post_rate = _lognormal(rng, cfg.mean_post_rate, 1.0, n) * np.where(lurker, 0.1, 1.35) * creator
    post_rate = np.minimum(np.where(is_celeb, 4 * post_rate + 0.5, post_rate), 8.0)
    media_pref = dirichlet_rows(rng, 4.0 * np.array([0.55, 0.25, 0.2]), n)
    m = cfg.mean_daily_active
    active_p = rng.beta(0.9, 0.9 * (1 - m) / m, n)
    extra_sessions = np.minimum(_lognormal(rng, 0.6, 0.9, n), 6.0)
    scroll_mean = np.clip(_lognormal(rng, 10.0, 0.5, n), 3.0, 50.0)
    explore_p = rng.beta(2.0, 2.0 * (1 - cfg.explore_share) / cfg.explore_share, n)
    propensity = rng.normal(0.0, 0.5, n)
    negativity = rng.normal(0.0, 0.5, n)
    out_degree = np.clip(_lognormal(rng, cfg.mean_out_degree, 0.8, n), 2, 40 * cfg.mean_out_degree)

    f32 = np.float32
    return Users(
        n=n,
        n_initial=n0,
        created_ms=pad(created),
        signup_day=pad(signup_day, -1),
        country=pad(country, NO_COUNTRY),
        utc_offset_min=pad(offsets),
        is_private=pad(is_private),
        is_verified=pad(is_verified),
        celebrity_rank=pad(celebrity_rank),
        interests=pad(interests),
        author_topics=pad(author_topics),
        author_quality=pad(author_quality.astype(f32)),
        post_rate=pad(post_rate),
        media_pref=pad(media_pref),
        active_p=pad(active_p),
        extra_sessions=pad(extra_sessions),
        scroll_mean=pad(scroll_mean),
        explore_p=pad(explore_p),
        propensity=pad(propensity.astype(f32)),
        negativity=pad(negativity.astype(f32)),
        fitness=pad(fitness),
        out_degree=pad(out_degree.round().astype(np.int64)),
    )


def sample_topics(rng: np.random.Generator, profiles: np.ndarray) -> np.ndarray:
    """One topic per row, drawn from that row's topic distribution."""
    cum = np.cumsum(profiles, axis=1)
    u = rng.random(len(profiles)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), profiles.shape[1] - 1)


def sample_followees(
    rng: np.random.Generator,
    followers: np.ndarray,
    users: Users,
    in_degree: np.ndarray,
    allowed: np.ndarray,
    cap: float = 0.0,
) -> np.ndarray:
    """Preferential attachment with topics: pick a topic the follower likes, then an account that
    posts about it with probability ~ (followers + 3)**0.9 * fitness, saturating at `cap`
    followers (so no ordinary account outgrows the celebrities).

    `allowed` masks which accounts may be picked (existing, not celebrities, ...). Returns one
    followee per follower entry (self-follows and repeats are removed by the caller).
    """
    out = np.zeros(len(followers), dtype=np.int64)
    if len(followers) == 0:
        return out
    topics = sample_topics(rng, users.interests[followers])
    room = np.exp(-((in_degree / cap) ** 2)) if cap else 1.0
    base = (in_degree + PA_OFFSET) ** PA_POWER * users.fitness * allowed * room
    for t in np.unique(topics):  # one pass per topic (~20), vectorised over accounts
        rows = np.flatnonzero(topics == t)
        cdf = np.cumsum(base * (users.author_topics[:, t] + 0.02))
        out[rows] = np.searchsorted(cdf, rng.random(len(rows)) * cdf[-1], side="right")
    return np.minimum(out, len(base) - 1)


@dataclass
class GraphEvents:
    """Rows for the follows/blocks logs (before they are encoded as JSON)."""

    src: np.ndarray
    dst: np.ndarray
    action: np.ndarray  # index into FOLLOW_ACTIONS / BLOCK_ACTIONS
    ts: np.ndarray

    @staticmethod
    def empty() -> GraphEvents:
        z = np.zeros(0, dtype=np.int64)
        return GraphEvents(z, z, z, z)

    @staticmethod
    def concat(parts: list[GraphEvents]) -> GraphEvents:
        parts = [p for p in parts if len(p.src)]
        if not parts:
            return GraphEvents.empty()
        return GraphEvents(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("src", "dst", "action", "ts")
            )
        )

    def __len__(self) -> int:
        return len(self.src)


FOLLOW, UNFOLLOW, APPROVE = 0, 1, 2  # data.columns.FOLLOW_ACTIONS order
BLOCK, UNBLOCK, MUTE, UNMUTE = 0, 1, 2, 3  # data.columns.BLOCK_ACTIONS order


class GraphState:
    """The follow / block / mute relations at a point in time, as sorted int64 pair keys.

    A follow of a private account is pending (`visible` False) until the account approves it;
    only visible follows put an author's posts in the follower's Home feed.
    """

    def __init__(self, n_users: int):
        self.n_users = n_users
        self.follow_keys = np.zeros(0, dtype=np.int64)
        self.visible = np.zeros(0, dtype=bool)
        self.block_keys = np.zeros(0, dtype=np.int64)
        self.mute_keys = np.zeros(0, dtype=np.int64)

    # --- follows ---------------------------------------------------------------------------------
    def add_follows(self, keys: np.ndarray, visible: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        new = ~isin_sorted(self.follow_keys, keys)
        keys, visible = keys[new], np.asarray(visible, dtype=bool)[new]
        first = first_occurrence(keys)
        all_keys = np.concatenate([self.follow_keys, keys[first]])
        order = np.argsort(all_keys, kind="stable")
        self.follow_keys = all_keys[order]
        self.visible = np.concatenate([self.visible, visible[first]])[order]

    def remove_follows(self, keys: np.ndarray) -> None:
        keep = ~in_set(self.follow_keys, keys)
        self.follow_keys, self.visible = self.follow_keys[keep], self.visible[keep]

    def approve(self, keys: np.ndarray) -> None:
        pos = np.searchsorted(self.follow_keys, keys)
        pos = pos[pos < len(self.follow_keys)]
        pos = pos[in_set(self.follow_keys[pos], keys)]
        self.visible[pos] = True

    def has_follow(self, keys: np.ndarray) -> np.ndarray:
        """Any follow edge, pending or approved."""
        return isin_sorted(self.follow_keys, keys)

    def visible_keys(self) -> np.ndarray:
        return self.follow_keys[self.visible]

    def in_degree(self) -> np.ndarray:
        return np.bincount(key_dst(self.visible_keys()), minlength=self.n_users + 1).astype(
            np.float64
        )

    # --- blocks and mutes ------------------------------------------------------------------------
    def set_blocks(self, add: np.ndarray | None = None, remove: np.ndarray | None = None) -> None:
        self.block_keys = _update_set(self.block_keys, add, remove)

    def set_mutes(self, add: np.ndarray | None = None, remove: np.ndarray | None = None) -> None:
        self.mute_keys = _update_set(self.mute_keys, add, remove)

    def hidden(self, viewer: np.ndarray, author: np.ndarray) -> np.ndarray:
        """Pairs whose posts must never be served: a block either way, or a mute by the viewer."""
        return (
            isin_sorted(self.block_keys, pair_key(viewer, author))
            | isin_sorted(self.block_keys, pair_key(author, viewer))
            | isin_sorted(self.mute_keys, pair_key(viewer, author))
        )

    def feed_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr over viewers, followee) of visible follows that are not muted or blocked."""
        keys = self.visible_keys()
        src, dst = key_src(keys), key_dst(keys)
        keep = ~self.hidden(src, dst)
        src, dst = src[keep], dst[keep]
        indptr = np.searchsorted(src, np.arange(self.n_users + 2))
        return indptr, dst


def _update_set(keys: np.ndarray, add: np.ndarray | None, remove: np.ndarray | None) -> np.ndarray:
    if remove is not None and len(remove):
        keys = keys[~in_set(keys, remove)]
    if add is not None and len(add):
        keys = sorted_union(keys, np.asarray(add, dtype=np.int64))
    return keys


def _ts_between(rng: np.random.Generator, lo: np.ndarray, hi: int | np.ndarray, skew: float = 1.0):
    """A timestamp strictly inside (lo, hi); skew > 1 pulls it towards lo."""
    span = np.maximum(np.asarray(hi, dtype=np.int64) - lo - 2, 1)
    return lo + 1 + (span * rng.random(len(lo)) ** skew).astype(np.int64)


def make_initial_graph(
    cfg: WorldConfig, users: Users, seed: int, start_ms: int
) -> tuple[GraphState, GraphEvents, GraphEvents]:
    """The graph as it stands at WORLD_START, and its history (follow/approve, block/mute rows)."""
    rng = rng_for(seed, "initial_graph")
    n0 = users.n_initial
    existing = np.zeros(users.n + 1, dtype=bool)
    existing[1 : n0 + 1] = True
    celeb_rank = users.celebrity_rank
    is_celeb = celeb_rank > 0

    # 1) Celebrities: each user follows celebrity of rank r with chance top * r**-zipf, tilted by
    #    topic match, so the top account reaches ~top_celebrity_share of all users.
    celebs = np.flatnonzero(is_celeb)
    share = cfg.top_celebrity_share * celeb_rank[celebs].astype(float) ** -cfg.celebrity_zipf
    match = users.interests[1 : n0 + 1] @ users.author_topics[celebs].T  # (n0, C)
    tilt = np.clip(0.35 + 0.65 * match / match.mean(axis=0, keepdims=True), 0.0, 4.0)
    hit = rng.random(match.shape) < np.minimum(share[None, :] * tilt, 1.0)
    f_idx, c_idx = np.nonzero(hit)
    celeb_src, celeb_dst = f_idx + 1, celebs[c_idx]
    keep = celeb_src != celeb_dst
    celeb_src, celeb_dst = celeb_src[keep], celeb_dst[keep]

    # 2) Everyone else: preferential attachment in creation order (batches of sign-up cohorts),
    #    so early accounts accumulate followers and the degree distribution gets a power-law tail.
    in_degree = np.zeros(users.n + 1)
    src_parts, dst_parts = [], []
    allowed = existing & ~is_celeb
    cap = CAP_SHARE * cfg.top_celebrity_share * n0
    celeb_out = np.bincount(celeb_src, minlength=users.n + 1)
    for batch in np.array_split(np.arange(1, n0 + 1), 25):
        # +10%: repeats collapse when de-duplicated below
        want = np.maximum(np.round(1.1 * users.out_degree[batch]) - celeb_out[batch], 1).astype(
            np.int64
        )
        followers = np.repeat(batch, want)
        followees = sample_followees(rng, followers, users, in_degree, allowed, cap)
        keep = followers != followees
        src_parts.append(followers[keep])
        dst_parts.append(followees[keep])
        in_degree += np.bincount(followees[keep], minlength=users.n + 1)
    pa_src, pa_dst = np.concatenate(src_parts), np.concatenate(dst_parts)

    keys = unique_sorted(np.concatenate([pair_key(pa_src, pa_dst), pair_key(celeb_src, celeb_dst)]))
    src, dst = key_src(keys), key_dst(keys)
    base = np.maximum(users.created_ms[src], users.created_ms[dst])
    ts = _ts_between(rng, base, start_ms)

    # 3) Reciprocity: friends follow back (celebrities almost never do), a little later.
    back_p = np.where(is_celeb[dst], 0.001, cfg.reciprocity)
    back = rng.random(len(keys)) < back_p
    back_keys = pair_key(dst[back], src[back])
    back_ts = _ts_between(rng, ts[back], start_ms, skew=3.0)
    new = ~isin_sorted(keys, back_keys)
    back_keys, back_ts = back_keys[new], back_ts[new]
    first = first_occurrence(back_keys)
    back_keys, back_ts = back_keys[first], back_ts[first]
    keys = np.concatenate([keys, back_keys])
    ts = np.concatenate([ts, back_ts])
    order = np.argsort(keys)
    keys, ts = keys[order], ts[order]
    src, dst = key_src(keys), key_dst(keys)

    # 4) Private accounts approve most requests; the rest stay pending (and invisible).
    private = users.is_private[dst]
    approved = private & (rng.random(len(keys)) < 0.9)
    approve_ts = _ts_between(rng, ts[approved], start_ms, skew=4.0)
    visible = ~private | approved

    state = GraphState(users.n)
    state.follow_keys, state.visible = keys, visible
    # Verification goes to notable accounts: celebrities (set in make_users) and big followings.
    notable = np.zeros(users.n + 1, bool)
    notable[np.argsort(-state.in_degree(), kind="stable")[: max(5, n0 // 200)]] = True  # top 0.5%
    users.is_verified |= notable & (rng.random(users.n + 1) < 0.75)
    follows = GraphEvents.concat(
        [
            GraphEvents(src, dst, np.full(len(keys), FOLLOW), ts),
            GraphEvents(
                src[approved], dst[approved], np.full(int(approved.sum()), APPROVE), approve_ts
            ),
        ]
    )

    # 5) A few blocks between unconnected accounts, and mutes of accounts one still follows.
    nb = max(3, int(cfg.initial_blocks_per_user * n0))
    b_src, b_dst = rng.integers(1, n0 + 1, nb), rng.integers(1, n0 + 1, nb)
    ok = (
        (b_src != b_dst)
        & ~state.has_follow(pair_key(b_src, b_dst))
        & ~state.has_follow(pair_key(b_dst, b_src))
    )
    b_keys = unique_sorted(pair_key(b_src[ok], b_dst[ok]))
    nm = max(3, int(cfg.initial_mutes_per_user * n0))
    vis = state.visible_keys()
    m_keys = unique_sorted(vis[rng.integers(0, len(vis), nm)])
    state.set_blocks(add=b_keys)
    state.set_mutes(add=m_keys)
    b_base = np.maximum(users.created_ms[key_src(b_keys)], users.created_ms[key_dst(b_keys)])
    m_follow_ts = ts[np.searchsorted(keys, m_keys)]
    blocks = GraphEvents.concat(
        [
            GraphEvents(
                key_src(b_keys),
                key_dst(b_keys),
                np.full(len(b_keys), BLOCK),
                _ts_between(rng, b_base, start_ms),
            ),
            GraphEvents(
                key_src(m_keys),
                key_dst(m_keys),
                np.full(len(m_keys), MUTE),
                _ts_between(rng, m_follow_ts, start_ms),
            ),
        ]
    )
    return state, follows, blocks
