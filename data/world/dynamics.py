"""Graph evolution: who unfollows, blocks, mutes, follows and approves whom, day by day; and which
accounts get verified.

Removals (`unfollows`, `blocks_and_mutes`, the picks of `pick_unblocks`) take effect at the start
of a day, so a post never slips through after them; additions (`new_follows`, `apply_unblocks`)
at its end, effective from tomorrow. Every change is also appended as a `GraphEvents` row for the
day's follows / blocks log.
"""

from __future__ import annotations

import numpy as np

from data.days import DAY_MS, HOUR_MS, MINUTE_MS
from data.world.accumulator import HIDE, REPORT, DayAccumulator
from data.world.config import WorldConfig
from data.world.graph import (
    APPROVE,
    BLOCK,
    FOLLOW,
    MUTE,
    UNBLOCK,
    UNFOLLOW,
    UNMUTE,
    GraphEvents,
    GraphState,
    Users,
    sample_followees,
)
from data.world.truth import PairState
from data.world.util import (
    first_occurrence,
    in_set,
    isin_sorted,
    key_dst,
    key_src,
    pair_key,
    unique_sorted,
)

# Graph dynamics driven by behaviour.
FOLLOW_AFTER_STRENGTH = 2.5  # out-of-network pair strength from which a viewer may follow
FOLLOW_AFTER_P = 0.35
APPROVE_P, APPROVE_DELAY_MS = 0.85, 8 * HOUR_MS
BLOCK_AFTER_REPORT_P = 0.5
BLOCK_AFTER_HIDE_P = 0.03  # out-of-network author
MUTE_AFTER_HIDE_P = 0.1  # followed author
UNBLOCK_P = 0.01  # per existing block or mute, per day
VERIFY_RATE = 0.0005  # accounts getting verified per day


class GraphDynamics:
    """Changes `graph` in place; carries pending approvals and tomorrow's reactions between days."""

    def __init__(self, cfg: WorldConfig, users: Users, graph: GraphState):
        self.cfg, self.users, self.graph = cfg, users, graph
        self.approvals = np.zeros((0, 2), np.int64)  # scheduled [pair key, approve ms]
        self.reactive = np.zeros((0, 3), np.int64)  # [viewer, author, action] carried to tomorrow

    # --- removals ------------------------------------------------------------------------------
    def unfollows(self, rng, day_start, f_rows) -> np.ndarray:
        keys = self.graph.follow_keys
        gone = keys[rng.random(len(keys)) < self.cfg.unfollow_rate]
        ts = day_start + rng.integers(0, DAY_MS, len(gone))
        self._remove_follows(gone)
        f_rows.append(GraphEvents(key_src(gone), key_dst(gone), np.full(len(gone), UNFOLLOW), ts))
        return gone

    def _remove_follows(self, keys: np.ndarray) -> None:
        self.graph.remove_follows(keys)
        self.approvals = self.approvals[~in_set(self.approvals[:, 0], keys)]

    def pick_unblocks(self, rng) -> tuple[np.ndarray, np.ndarray]:
        g = self.graph
        return (
            g.block_keys[rng.random(len(g.block_keys)) < UNBLOCK_P],
            g.mute_keys[rng.random(len(g.mute_keys)) < UNBLOCK_P],
        )

    def blocks_and_mutes(self, rng, day_start, existing, f_rows, b_rows) -> None:
        g = self.graph
        r = self.reactive
        # Background blocks between random accounts, plus reactions to yesterday's reports/hides.
        nb = rng.poisson(self.cfg.block_rate * len(existing))
        bg = np.stack(
            [rng.choice(existing, nb), rng.choice(existing, nb), np.full(nb, BLOCK)], axis=1
        )
        r = np.concatenate([r, bg]) if len(r) else bg
        r = r[r[:, 0] != r[:, 1]]
        keys = pair_key(r[:, 0], r[:, 1])
        first = first_occurrence(keys)
        keys, act = keys[first], r[first, 2]
        order = np.argsort(keys)
        keys, act = keys[order], act[order]
        block = keys[(act == BLOCK) & ~isin_sorted(g.block_keys, keys)]
        mute = keys[
            (act == MUTE) & ~isin_sorted(g.mute_keys, keys) & ~isin_sorted(g.block_keys, keys)
        ]
        b_ts = day_start + rng.integers(0, DAY_MS, len(block))
        m_ts = day_start + rng.integers(0, DAY_MS, len(mute))
        # A block cuts follows both ways; the export records them as unfollows at the block time.
        fw, bw = pair_key(key_src(block), key_dst(block)), pair_key(key_dst(block), key_src(block))
        cut_fw, cut_bw = g.has_follow(fw), g.has_follow(bw)
        cut = np.concatenate([fw[cut_fw], bw[cut_bw]])
        cut_ts = np.concatenate([b_ts[cut_fw], b_ts[cut_bw]])
        f_rows.append(GraphEvents(key_src(cut), key_dst(cut), np.full(len(cut), UNFOLLOW), cut_ts))
        self._remove_follows(cut)
        g.set_blocks(add=block)
        g.set_mutes(add=mute)
        b_rows.append(GraphEvents(key_src(block), key_dst(block), np.full(len(block), BLOCK), b_ts))
        b_rows.append(GraphEvents(key_src(mute), key_dst(mute), np.full(len(mute), MUTE), m_ts))
        self.reactive = np.zeros((0, 3), np.int64)

    # --- additions --------------------------------------------------------------------------------
    def new_follows(
        self, rng, d, day_start, day_end, acc: DayAccumulator, pairs: PairState, unfollowed, f_rows
    ) -> None:
        """`pairs`: the truth's pair strengths, already updated with today's engagements."""
        users, g, cfg = self.users, self.graph, self.cfg
        exists = users.created_ms < day_end
        exists[0] = False
        in_degree = g.in_degree()
        src_parts, dst_parts, ts_parts = [], [], []

        # a) engagement-driven: repeated engagement with an out-of-network public author
        pv, pa_, last = acc.last_positive()
        strength, _ = pairs.get(pv, pa_)
        ok = (
            (strength >= FOLLOW_AFTER_STRENGTH)
            & ~users.is_private[pa_]
            & (rng.random(len(pv)) < FOLLOW_AFTER_P)
        )
        src_parts.append(pv[ok])
        dst_parts.append(pa_[ok])
        ts_parts.append(last[ok] + rng.integers(MINUTE_MS, 10 * MINUTE_MS, int(ok.sum())))

        # b) background: some of today's active users discover accounts to follow
        active = unique_sorted(np.concatenate(acc.active)) if acc.active else np.zeros(0, np.int64)
        movers = active[rng.random(len(active)) < cfg.new_follow_rate]
        f = np.repeat(movers, 1 + rng.poisson(1.0, len(movers)))
        t = sample_followees(rng, f, users, in_degree, exists)
        src_parts.append(f)
        dst_parts.append(t)
        ts_parts.append(day_start + rng.integers(0, DAY_MS, len(f)))

        # c) sign-ups follow a few popular and on-topic accounts right after creating the account
        newbies = np.flatnonzero(users.signup_day == d)
        f = np.repeat(newbies, 3 + rng.poisson(5.0, len(newbies)))
        t = sample_followees(rng, f, users, in_degree, exists)
        src_parts.append(f)
        dst_parts.append(t)
        ts_parts.append(
            users.created_ms[f] + 1 + rng.exponential(20 * MINUTE_MS, len(f)).astype(np.int64)
        )

        src, dst, ts = (np.concatenate(x) for x in (src_parts, dst_parts, ts_parts))
        ts = np.maximum(ts, np.maximum(users.created_ms[src], users.created_ms[dst]) + 1)
        src, dst, ts = self._valid_new_follows(src, dst, ts, day_end, unfollowed)

        # d) follow-backs, later the same day
        back = ~users.is_celebrity[dst] & (rng.random(len(src)) < 0.6 * cfg.reciprocity)
        b_src, b_dst = dst[back], src[back]
        b_ts = ts[back] + 1 + rng.exponential(2 * HOUR_MS, int(back.sum())).astype(np.int64)
        b_src, b_dst, b_ts = self._valid_new_follows(
            b_src, b_dst, b_ts, day_end, unfollowed, also=pair_key(src, dst)
        )
        src, dst, ts = (
            np.concatenate([src, b_src]),
            np.concatenate([dst, b_dst]),
            np.concatenate([ts, b_ts]),
        )

        private = users.is_private[dst]
        keys = pair_key(src, dst)
        g.add_follows(keys, ~private)
        f_rows.append(GraphEvents(src, dst, np.full(len(src), FOLLOW), ts))
        # Private accounts approve most requests after a while (maybe days later).
        asks = np.flatnonzero(private & (rng.random(len(src)) < APPROVE_P))
        when = ts[asks] + 1 + rng.exponential(APPROVE_DELAY_MS, len(asks)).astype(np.int64)
        self.approvals = np.concatenate([self.approvals, np.stack([keys[asks], when], axis=1)])
        due = (self.approvals[:, 1] < day_end) & g.has_follow(self.approvals[:, 0])
        done = self.approvals[due]
        self.approvals = self.approvals[self.approvals[:, 1] >= day_end]
        g.approve(done[:, 0])
        f_rows.append(
            GraphEvents(
                key_src(done[:, 0]), key_dst(done[:, 0]), np.full(len(done), APPROVE), done[:, 1]
            )
        )

    def _valid_new_follows(self, src, dst, ts, day_end, unfollowed, also=None):
        """Drop self-follows, repeats, existing follows, blocked/muted pairs, pairs unfollowed
        today (the log must replay in order) and events past midnight."""
        keys = pair_key(src, dst)
        ok = (src != dst) & (src > 0) & (dst > 0) & (ts < day_end)
        ok &= (
            ~self.graph.has_follow(keys) & ~self.graph.hidden(src, dst) & ~in_set(keys, unfollowed)
        )
        if also is not None:
            ok &= ~in_set(keys, also)
        src, dst, ts, keys = src[ok], dst[ok], ts[ok], keys[ok]
        first = first_occurrence(keys)
        return src[first], dst[first], ts[first]

    def apply_unblocks(self, rng, day_start, unblock_keys, unmute_keys, b_rows) -> None:
        self.graph.set_blocks(remove=unblock_keys)
        self.graph.set_mutes(remove=unmute_keys)
        # Un-doing is logged during the day; like any addition it only counts from tomorrow.
        for keys, action in ((unblock_keys, UNBLOCK), (unmute_keys, UNMUTE)):
            b_rows.append(
                GraphEvents(
                    key_src(keys),
                    key_dst(keys),
                    np.full(len(keys), action),
                    day_start + rng.integers(0, DAY_MS, len(keys)),
                )
            )

    def plan_reactions(self, rng, acc: DayAccumulator) -> None:
        """Tomorrow's reactions: reports lead to blocks; hides to mutes (followed) or blocks."""
        v, a, kind = acc.negatives()
        follows = self.graph.has_follow(pair_key(v, a))
        u = rng.random(len(v))
        block = ((kind == REPORT) & (u < BLOCK_AFTER_REPORT_P)) | (
            (kind == HIDE) & ~follows & (u < BLOCK_AFTER_HIDE_P)
        )
        mute = (kind == HIDE) & follows & (u < MUTE_AFTER_HIDE_P)
        self.reactive = np.concatenate(
            [
                np.stack([v[block], a[block], np.full(int(block.sum()), BLOCK)], axis=1),
                np.stack([v[mute], a[mute], np.full(int(mute.sum()), MUTE)], axis=1),
            ]
        )


def draw_verifications(
    rng: np.random.Generator, created_ms: np.ndarray, is_verified: np.ndarray, day_start: int
) -> tuple[np.ndarray, np.ndarray]:
    """A few unverified accounts get verified today: (sorted ids, ts of the update)."""
    pool = np.flatnonzero((created_ms < day_start) & ~is_verified)
    pool = pool[pool > 0]
    up = (
        rng.choice(pool, size=min(len(pool), rng.poisson(VERIFY_RATE * len(pool))), replace=False)
        if len(pool)
        else pool
    )
    up = np.sort(up)
    up_ts = np.maximum(day_start + rng.integers(0, DAY_MS, len(up)), created_ms[up] + 1)
    return up, up_ts
