"""The day loop: serve feeds, realise engagements from the truth, evolve the graph, write logs.

Per simulated day:
  1. removals take effect first: unfollows, blocks (with the follows they cut) and mutes made
     today never let a post through later the same day;
  2. the truth's pair state for the day is frozen and persisted;
  3. viewers are simulated in chunks (bounded memory): sessions -> served lists (the logging
     policy) -> impressions -> engagements drawn from the truth model;
  4. additions take effect at the end of the day: new follows (on sign-up, background, and
     driven by repeated engagement with an out-of-network author), follow-backs, approvals of
     private accounts, unblocks/unmutes; pair strengths decay and grow with today's engagements;
  5. the day's users/posts/follows/blocks rows are written.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.columns import (
    BLOCK_ACTIONS,
    FOLLOW_ACTIONS,
    MEDIA_TYPES,
    SURFACES,
    WORLD_SEED,
    WORLD_START,
)
from data.contracts import LOG_TYPES
from data.world.config import WORLD_CONFIGS, WorldConfig
from data.world.content import NEVER, Posts, make_posts, topic_names
from data.world.graph import (
    APPROVE,
    BLOCK,
    COUNTRY_CODES,
    FOLLOW,
    MUTE,
    UNBLOCK,
    UNFOLLOW,
    UNMUTE,
    GraphEvents,
    Users,
    make_initial_graph,
    make_users,
    sample_followees,
)
from data.world.landing import (
    LandingWriter,
    encode,
    json_bool,
    json_enum,
    json_int,
    json_str,
    json_ts,
    nullable,
)
from data.world.policy import MODEL_VERSION, build_pools, make_sessions, serve
from data.world.truth import (
    ACTIONS,
    INTERACTION_WEIGHTS,
    PairState,
    PostLatents,
    TruthModel,
    UserLatents,
    dwell_noise,
    examine_probability,
    sample_outcomes,
    update_pair_strength,
)
from data.world.util import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    day_ms,
    first_occurrence,
    hex_ids,
    in_set,
    isin_sorted,
    key_dst,
    key_src,
    pair_key,
    rank_in_groups,
    rng_for,
    sorted_union,
    unique_sorted,
)

log = logging.getLogger(__name__)

# Graph dynamics driven by behaviour.
FOLLOW_AFTER_STRENGTH = 2.5  # out-of-network pair strength from which a viewer may follow
FOLLOW_AFTER_P = 0.35
APPROVE_P, APPROVE_DELAY_MS = 0.85, 8 * HOUR_MS
BLOCK_AFTER_REPORT_P = 0.5
BLOCK_AFTER_HIDE_P = 0.03  # out-of-network author
MUTE_AFTER_HIDE_P = 0.1  # followed author
UNBLOCK_P = 0.01  # per existing block or mute, per day
VERIFY_RATE = 0.0005  # accounts getting verified per day
# What the simulator emits, by code: its own fixed names. Ingestion validates against the log
# vocabulary (data/vocabulary.toml), which declares every one of them (checked by
# tests/data/test_contract_vocabulary.py); a team's vocabulary may add names the simulator never writes.
ENGAGEMENT_TYPES = ("like", "comment", "share", "save", "profile_visit", "dwell", "hide", "report")
IMPRESSION_SOURCES = ("in_network", "celebrity", "explore_popular", "explore_random")  # policy.py codes
ENG_CODE = {t: i for i, t in enumerate(ENGAGEMENT_TYPES)}
POSITIVE_COUNTED = ("like", "comment", "share", "save")  # what "popular" means to the policy


@dataclass
class WorldSummary:
    size: str
    seed: int
    days: list[str]
    rows: dict[str, int]  # lines written per log, dirt included
    dirt: dict[str, dict[str, int]]  # injected dirt per log per kind
    events: int  # engagement + impression lines written
    generate_s: float
    clean_rows: dict[str, int] = field(default_factory=dict)  # real rows per log (no dirt)
    users: int = 0
    posts: int = 0
    landing_dir: str = ""
    truth_dir: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def generate_world(
    size: str = "tiny",
    seed: int = WORLD_SEED,
    landing_dir: Path | str = Path("landing"),
    truth_dir: Path | str = Path("truth"),
    config: WorldConfig | None = None,
) -> WorldSummary:
    """Simulate the world and write landing/<log>/<day>/part-*.jsonl and the truth under truth_dir.

    Deterministic: the same size, seed (and config) give byte-identical landing files. Existing
    output of a previous run (the six log folders, the truth files) is replaced.
    """
    cfg = config or WORLD_CONFIGS[size]
    t0 = time.perf_counter()
    world = _World(cfg, seed, Path(landing_dir), Path(truth_dir))
    world.run()
    w = world.writer
    return WorldSummary(
        size=cfg.name,
        seed=seed,
        days=[d.isoformat() for d in world.days],
        rows=dict(w.rows),
        dirt={k: dict(v) for k, v in w.dirt.items()},
        events=w.rows["engagements"] + w.rows["impressions"],
        generate_s=round(time.perf_counter() - t0, 3),
        clean_rows=dict(w.clean),
        users=world.users.n,
        posts=world.posts.n,
        landing_dir=str(landing_dir),
        truth_dir=str(truth_dir),
    )


def _prepare_dirs(landing: Path, truth: Path) -> None:
    for log in LOG_TYPES:
        shutil.rmtree(landing / log, ignore_errors=True)
    for sub in ("pair_state", "impressions"):
        shutil.rmtree(truth / sub, ignore_errors=True)
    for name in ("users.parquet", "posts.parquet", "meta.json"):
        (truth / name).unlink(missing_ok=True)
    landing.mkdir(parents=True, exist_ok=True)
    (truth / "pair_state").mkdir(parents=True, exist_ok=True)
    (truth / "impressions").mkdir(parents=True, exist_ok=True)


class _World:
    def __init__(self, cfg: WorldConfig, seed: int, landing: Path, truth: Path):
        self.cfg, self.seed, self.landing, self.truth_dir = cfg, seed, landing, truth
        _prepare_dirs(landing, truth)
        self.start_ms = day_ms(WORLD_START)
        self.days = [WORLD_START + timedelta(days=d) for d in range(cfg.days)]
        self.users: Users = make_users(cfg, seed, self.start_ms)
        self.posts: Posts = make_posts(cfg, self.users, seed, self.start_ms)
        self.graph, init_follows, init_blocks = make_initial_graph(
            cfg, self.users, seed, self.start_ms
        )
        self.follow_rows: dict[int, list[GraphEvents]] = {0: [init_follows]}
        self.block_rows: dict[int, list[GraphEvents]] = {0: [init_blocks]}
        self.truth = TruthModel(
            UserLatents(self.users.interests, self.users.propensity, self.users.negativity),
            PostLatents(
                self.posts.author,
                self.posts.created_ms,
                self.posts.media,
                self.posts.mix,
                self.posts.quality,
            ),
            WORLD_START,
            cfg.days,
        )
        self.pairs = PairState.empty()
        self.post_engagements = np.zeros(self.posts.n + 1)
        self.seen_prev = np.zeros(0, np.int64)  # impressions of yesterday
        self.seen_prev2 = np.zeros(0, np.int64)  # ... and the day before
        self.approvals = np.zeros((0, 2), np.int64)  # scheduled [pair key, approve ms]
        self.reactive = np.zeros((0, 3), np.int64)  # [viewer, author, action] carried to tomorrow
        self.is_verified = self.users.is_verified.copy()
        self.writer = LandingWriter(landing, self.days, seed, cfg.dirt)
        self.hashtags = pa.array(self.posts.hashtags_json, pa.string())
        self.captions = pa.array(self.posts.caption_json, pa.string())

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        self._write_truth_static()
        t0 = time.perf_counter()
        for d in range(self.cfg.days):
            self._day(d)
            log.info(
                "world %s: day %s done (%d/%d), %d impressions so far, %.1fs",
                self.cfg.name,
                self.days[d],
                d + 1,
                self.cfg.days,
                self.writer.rows["impressions"],
                time.perf_counter() - t0,
            )
        final = self.pairs.with_follows(self.graph.visible_keys())
        self._write_pair_state(self.cfg.days, final)

    def _day(self, d: int) -> None:
        cfg, users = self.cfg, self.users
        rng = rng_for(self.seed, "day", d)
        day_start = self.start_ms + d * DAY_MS
        day_end = day_start + DAY_MS
        f_rows = self.follow_rows.setdefault(d, [])
        b_rows = self.block_rows.setdefault(d, [])
        existing = np.flatnonzero(users.created_ms < day_start)
        existing = existing[existing > 0]

        # 1) removals, effective for the whole day
        unfollowed = self._unfollows(rng, day_start, f_rows)
        unblock_keys, unmute_keys = self._pick_unblocks(rng)
        self._blocks_and_mutes(rng, day_start, existing, f_rows, b_rows)

        # 2) the truth's state of the day
        state = self.pairs.with_follows(self.graph.visible_keys())
        self._write_pair_state(d, state)

        # 3) serve and engage, chunk by chunk
        seen = sorted_union(self.seen_prev, self.seen_prev2)
        pools = build_pools(
            cfg, d, day_start, users, self.posts, self.graph, self.post_engagements, seen
        )
        alive = np.arange(1, users.n + 1)[users.created_ms[1:] < day_end]
        acc = _DayAccumulator()
        writer = pq.ParquetWriter(
            self.truth_dir / "impressions" / f"{self.days[d]}.parquet", _TRUTH_IMPRESSION_SCHEMA
        )
        n_chunks = max(1, -(-len(alive) // cfg.viewer_chunk))
        for c, chunk in enumerate(np.array_split(alive, n_chunks)):
            crng = rng_for(self.seed, "serve", d, c)
            sessions = make_sessions(crng, cfg, users, chunk, pools)
            served = serve(crng, cfg, sessions, pools, self.posts, self.graph)
            imp, eng, truth_table = self._realise(crng, d, c, sessions, served, state, day_end, acc)
            self.writer.write("impressions", d, c, imp)
            self.writer.write("engagements", d, c, eng)
            writer.write_table(truth_table)
        writer.close()

        # 4) additions, effective from tomorrow
        self.pairs = update_pair_strength(self.pairs, *acc.pairs())
        self._new_follows(rng, d, day_start, day_end, acc, unfollowed, f_rows)
        self._apply_unblocks(rng, day_start, unblock_keys, unmute_keys, b_rows)
        self._end_of_day(d, acc)

        # 5) the day's slowly changing logs
        self._write_users(rng, d, day_start, day_end)
        self._write_posts(d, day_start, day_end)
        for log, rows, actions in (
            ("follows", f_rows, FOLLOW_ACTIONS),
            ("blocks", b_rows, BLOCK_ACTIONS),
        ):
            ev = GraphEvents.concat(rows)
            self.writer.write(log, d, 0, _graph_lines(log, ev, actions))
        del self.follow_rows[d], self.block_rows[d]

    # --- removals ------------------------------------------------------------------------------
    def _unfollows(self, rng, day_start, f_rows) -> np.ndarray:
        keys = self.graph.follow_keys
        gone = keys[rng.random(len(keys)) < self.cfg.unfollow_rate]
        ts = day_start + rng.integers(0, DAY_MS, len(gone))
        self._remove_follows(gone)
        f_rows.append(GraphEvents(key_src(gone), key_dst(gone), np.full(len(gone), UNFOLLOW), ts))
        return gone

    def _remove_follows(self, keys: np.ndarray) -> None:
        self.graph.remove_follows(keys)
        self.approvals = self.approvals[~in_set(self.approvals[:, 0], keys)]

    def _pick_unblocks(self, rng) -> tuple[np.ndarray, np.ndarray]:
        g = self.graph
        return (
            g.block_keys[rng.random(len(g.block_keys)) < UNBLOCK_P],
            g.mute_keys[rng.random(len(g.mute_keys)) < UNBLOCK_P],
        )

    def _blocks_and_mutes(self, rng, day_start, existing, f_rows, b_rows) -> None:
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

    # --- impressions and engagements --------------------------------------------------------------
    def _realise(self, rng, d, c, sessions, served, state, day_end, acc):
        posts, truth = self.posts, self.truth
        s, post, pos = served.session, served.post, served.position
        viewer = sessions.viewer[s]
        author = posts.author[post]
        start = sessions.start[s]

        # Time: each item is seen after the items above it; examined items hold the viewer for
        # their dwell, skipped ones for a flick.
        first = truth.scores(viewer, post, start, interactions=state)
        examined = rng.random(len(s)) < examine_probability(pos)
        noise = dwell_noise(rng, len(s))
        flick = rng.integers(300, 1500, len(s))
        view = np.where(
            examined, np.clip(np.exp(first.dwell_mu + noise), 300, 600_000), flick
        ).astype(np.int64)
        csum = np.cumsum(view) - view
        offset = csum - csum[np.searchsorted(s, s)]  # exclusive cumsum within the session
        ts = start + offset
        keep = ts < day_end  # a session cut by midnight
        s, post, pos, viewer, author, ts = (
            s[keep],
            post[keep],
            pos[keep],
            viewer[keep],
            author[keep],
            ts[keep],
        )
        examined, noise, view = examined[keep], noise[keep], view[keep]

        # The outcome is scored at the impression's own time (what the truth files record).
        sc = truth.scores(viewer, post, ts, interactions=state)
        p = sc.probabilities
        out = sample_outcomes(rng, sc, pos, examined=examined, noise=noise)
        y, dwell, dwell_event = out.actions, out.dwell_ms, out.dwell_event

        # --- engagement rows ---
        rows_idx, types, e_ts = [], [], []
        for a in ("like", "comment", "share", "save", "profile_visit", "hide", "report"):
            idx = np.flatnonzero(y[a])
            frac = (
                rng.uniform(0.5, 1.0, len(idx))
                if a == "profile_visit"
                else rng.uniform(0.2, 0.95, len(idx))
            )
            rows_idx.append(idx)
            types.append(np.full(len(idx), ENG_CODE[a]))
            e_ts.append(ts[idx] + (frac * dwell[idx]).astype(np.int64))
        idx = np.flatnonzero(dwell_event)
        rows_idx.append(idx)
        types.append(np.full(len(idx), ENG_CODE["dwell"]))
        e_ts.append(ts[idx] + dwell[idx])
        e_i = np.concatenate(rows_idx)
        e_type = np.concatenate(types)
        e_ts = np.minimum(np.concatenate(e_ts), day_end - 1)
        order = np.lexsort((e_type, e_i))  # grouped by impression: stable event ids
        e_i, e_type, e_ts = e_i[order], e_type[order], e_ts[order]
        e_value = np.where(e_type == ENG_CODE["dwell"], dwell[e_i], 0)

        request = hex_ids(self.seed, 1, d, c, s)
        event_id = hex_ids(self.seed, 2, d, c, np.arange(len(e_i)))
        surface = sessions.surface[s]
        imp_lines = encode(
            "impressions",
            {
                "request_id": json_str(request),
                "viewer_id": json_int(viewer),
                "post_id": json_int(post),
                "position": json_int(pos),
                "surface": json_enum(surface, SURFACES),
                "source": json_enum(served.source[keep], IMPRESSION_SOURCES),
                "ts": json_ts(ts),
                "model_version": f'"{MODEL_VERSION}"',
                "score": "null",
                "features": "null",
                "propensity": "null",  # the logging policy is not a randomised one
            },
        )
        is_dwell = e_type == ENG_CODE["dwell"]
        value_text = pc.binary_join_element_wise(json_int(e_value), ".0", "")  # ms, as float
        eng_lines = encode(
            "engagements",
            {
                "event_id": json_str(event_id),
                "viewer_id": json_int(viewer[e_i]),
                "post_id": json_int(post[e_i]),
                "author_id": json_int(author[e_i]),
                "type": json_enum(e_type, ENGAGEMENT_TYPES),
                "value": nullable(value_text, ~is_dwell),
                "ts": json_ts(e_ts),
                "surface": json_enum(surface[e_i], SURFACES),
                "request_id": json_str(request.take(pa.array(e_i, pa.int64()))),
            },
        )

        # --- what the day teaches the world ---
        w = sum(INTERACTION_WEIGHTS[a] * y[a] for a in ACTIONS)
        touched = np.flatnonzero(w != 0)
        positive = np.flatnonzero(w > 0)
        acc.add_pairs(viewer[touched], author[touched], w[touched])
        acc.add_last_positive(viewer[positive], author[positive], ts[positive] + view[positive])
        acc.add_post_counts(post, sum(y[a] for a in POSITIVE_COUNTED))
        acc.add_negative(
            viewer[y["report"]], author[y["report"]], np.full(int(y["report"].sum()), 2)
        )
        acc.add_negative(viewer[y["hide"]], author[y["hide"]], np.full(int(y["hide"].sum()), 1))
        acc.seen.append(pair_key(viewer, post))
        acc.active.append(unique_sorted(viewer))

        table = pa.table(
            {
                "request_id": request,
                "viewer_id": viewer,
                "post_id": post,
                "author_id": author,
                "position": pos.astype(np.int32),
                "surface": pa.array(np.asarray(SURFACES)[surface]),
                "source": pa.array(np.asarray(IMPRESSION_SOURCES)[served.source[keep]]),
                "ts": pa.array(ts.astype("datetime64[ms]")).cast(pa.timestamp("ms", tz="UTC")),
                **{f"p_{a}": p[a].astype(np.float32) for a in ACTIONS},
                "expected_value": sc.expected_value.astype(np.float32),
                "examine_p": examine_probability(pos).astype(np.float32),
                "examined": examined,
                "dwell_ms": dwell.astype(np.int32),
                **{f"y_{a}": y[a] for a in ACTIONS},
            },
            schema=_TRUTH_IMPRESSION_SCHEMA,
        )
        return imp_lines, eng_lines, table

    # --- additions --------------------------------------------------------------------------------
    def _new_follows(self, rng, d, day_start, day_end, acc, unfollowed, f_rows) -> None:
        users, g, cfg = self.users, self.graph, self.cfg
        exists = users.created_ms < day_end
        exists[0] = False
        in_degree = g.in_degree()
        src_parts, dst_parts, ts_parts = [], [], []

        # a) engagement-driven: repeated engagement with an out-of-network public author
        pv, pa_, last = acc.last_positive()
        strength, _ = self.pairs.get(pv, pa_)  # already updated with today's engagements
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

    def _apply_unblocks(self, rng, day_start, unblock_keys, unmute_keys, b_rows) -> None:
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

    def _end_of_day(self, d: int, acc: _DayAccumulator) -> None:
        self.post_engagements += acc.post_counts(self.posts.n)
        self.seen_prev2, self.seen_prev = (
            self.seen_prev,
            unique_sorted(np.concatenate(acc.seen)) if acc.seen else np.zeros(0, np.int64),
        )
        # Tomorrow's reactions: reports lead to blocks; hides to mutes (followed) or blocks.
        v, a, kind = acc.negatives()
        rng = rng_for(self.seed, "reactions", d)
        follows = self.graph.has_follow(pair_key(v, a))
        u = rng.random(len(v))
        block = ((kind == 2) & (u < BLOCK_AFTER_REPORT_P)) | (
            (kind == 1) & ~follows & (u < BLOCK_AFTER_HIDE_P)
        )
        mute = (kind == 1) & follows & (u < MUTE_AFTER_HIDE_P)
        self.reactive = np.concatenate(
            [
                np.stack([v[block], a[block], np.full(int(block.sum()), BLOCK)], axis=1),
                np.stack([v[mute], a[mute], np.full(int(mute.sum()), MUTE)], axis=1),
            ]
        )

    # --- slowly changing logs ---------------------------------------------------------------------
    def _write_users(self, rng, d, day_start, day_end) -> None:
        users = self.users
        created = users.created_ms
        rows = np.flatnonzero(((created >= day_start) | (d == 0)) & (created < day_end))
        rows = rows[rows > 0]
        updated = created[rows].copy()
        verified = self.is_verified[rows]
        # A few accounts get verified: an update row with the new updated_at.
        pool = np.flatnonzero((created < day_start) & ~self.is_verified)
        pool = pool[pool > 0]
        up = (
            rng.choice(
                pool, size=min(len(pool), rng.poisson(VERIFY_RATE * len(pool))), replace=False
            )
            if len(pool)
            else pool
        )
        up = np.sort(up)
        up_ts = np.maximum(day_start + rng.integers(0, DAY_MS, len(up)), created[up] + 1)
        self.is_verified[up] = True
        ids = np.concatenate([rows, up])
        lines = encode(
            "users",
            {
                "user_id": json_int(ids),
                "created_at": json_ts(created[ids]),
                "updated_at": json_ts(np.concatenate([updated, up_ts])),
                "is_private": json_bool(users.is_private[ids]),
                "is_verified": json_bool(np.concatenate([verified, np.ones(len(up), bool)])),
                "country": nullable(
                    json_enum(np.maximum(users.country[ids], 0), COUNTRY_CODES),
                    users.country[ids] < 0,
                ),
            },
        )
        self.writer.write("users", d, 0, lines)

    def _write_posts(self, d, day_start, day_end) -> None:
        p = self.posts
        lo = -np.inf if d == 0 else day_start
        created = np.flatnonzero((p.created_ms >= lo) & (p.created_ms < day_end))
        created = created[created > 0]
        deleted = np.flatnonzero(
            (p.deleted_ms >= lo) & (p.deleted_ms < day_end) & (p.deleted_ms != NEVER)
        )
        ids = np.concatenate([created, deleted])
        is_del = np.concatenate([np.zeros(len(created), bool), np.ones(len(deleted), bool)])
        take = pa.array(ids, pa.int64())
        lines = encode(
            "posts",
            {
                "post_id": json_int(ids),
                "author_id": json_int(p.author[ids]),
                "created_at": json_ts(p.created_ms[ids]),
                "media_type": json_enum(p.media[ids], MEDIA_TYPES),
                "hashtags": self.hashtags.take(take),
                "caption": self.captions.take(take),
                "deleted_at": json_ts(np.where(is_del, p.deleted_ms[ids], 0), null=~is_del),
            },
        )
        self.writer.write("posts", d, 0, lines)

    # --- truth persistence ------------------------------------------------------------------------
    def _write_pair_state(self, d: int, state: PairState) -> None:
        day = WORLD_START + timedelta(days=d)
        pq.write_table(
            state.to_table(), self.truth_dir / "pair_state" / f"{day}.parquet", compression="zstd"
        )

    def _write_truth_static(self) -> None:
        u, p, t = self.users, self.posts, self.cfg.n_topics
        uid = np.arange(1, u.n + 1)
        users = {
            "user_id": uid,
            "created_at": _arrow_ts(u.created_ms[uid]),
            "signup_day": u.signup_day[uid],
            "is_private": u.is_private[uid],
            "celebrity_rank": u.celebrity_rank[uid],
            "country": pa.array([COUNTRY_CODES[c] if c >= 0 else None for c in u.country[uid]]),
            "active_p": u.active_p[uid],
            "extra_sessions": u.extra_sessions[uid],
            "explore_p": u.explore_p[uid],
            "propensity": u.propensity[uid],
            "negativity": u.negativity[uid],
            "author_quality": u.author_quality[uid],
            "post_rate": u.post_rate[uid],
            **{f"interest_{k:02d}": u.interests[uid, k] for k in range(t)},
            **{f"author_topic_{k:02d}": u.author_topics[uid, k] for k in range(t)},
        }
        pq.write_table(pa.table(users), self.truth_dir / "users.parquet", compression="zstd")
        pid = np.arange(1, p.n + 1)
        deleted = p.deleted_ms[pid]
        posts = {
            "post_id": pid,
            "author_id": p.author[pid],
            "created_at": _arrow_ts(p.created_ms[pid]),
            "deleted_at": pa.array(
                np.where(deleted == NEVER, 0, deleted).astype("datetime64[ms]"),
                mask=deleted == NEVER,
            ).cast(pa.timestamp("ms", tz="UTC")),
            "media_type": pa.array(np.asarray(MEDIA_TYPES)[p.media[pid]]),
            "media_code": p.media[pid],
            "main_topic": p.main_topic[pid],
            "quality": p.quality[pid],
            **{f"mix_{k:02d}": p.mix[pid, k] for k in range(t)},
        }
        pq.write_table(pa.table(posts), self.truth_dir / "posts.parquet", compression="zstd")
        from data.world import truth as tm

        meta = {
            "size": self.cfg.name,
            "seed": self.seed,
            "start": WORLD_START.isoformat(),
            "n_days": self.cfg.days,
            "days": [x.isoformat() for x in self.days],
            "n_topics": t,
            "topics": list(topic_names(t)),
            "actions": list(ACTIONS),
            "true_value_weights": tm.TRUE_VALUE_WEIGHTS,
            "long_dwell_ms": tm.LONG_DWELL_MS,
            "dwell_emit_ms": tm.DWELL_EMIT_MS,
            "pair_decay": tm.PAIR_DECAY,
            "interaction_weights": tm.INTERACTION_WEIGHTS,
            "model_version": MODEL_VERSION,
            "positions": "0-based",
        }
        (self.truth_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


_TRUTH_IMPRESSION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("viewer_id", pa.int64()),
        ("post_id", pa.int64()),
        ("author_id", pa.int64()),
        ("position", pa.int32()),
        ("surface", pa.string()),
        ("source", pa.string()),
        ("ts", pa.timestamp("ms", tz="UTC")),
        *[(f"p_{a}", pa.float32()) for a in ACTIONS],
        ("expected_value", pa.float32()),
        ("examine_p", pa.float32()),
        ("examined", pa.bool_()),
        ("dwell_ms", pa.int32()),
        *[(f"y_{a}", pa.bool_()) for a in ACTIONS],
    ]
)


def _arrow_ts(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms).astype("datetime64[ms]")).cast(pa.timestamp("ms", tz="UTC"))


class _DayAccumulator:
    """What a day's chunks teach the world, gathered for the end-of-day update."""

    def __init__(self):
        self._pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._last: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._posts: list[tuple[np.ndarray, np.ndarray]] = []
        self._neg: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.seen: list[np.ndarray] = []
        self.active: list[np.ndarray] = []

    def add_pairs(self, v, a, w):
        self._pairs.append((v, a, w))

    def add_last_positive(self, v, a, ts):
        self._last.append((v, a, ts))

    def add_post_counts(self, post, count):
        self._posts.append((post, count))

    def add_negative(self, v, a, kind):
        self._neg.append((v, a, kind))

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(
            np.concatenate([x[i] for x in self._pairs]) if self._pairs else np.zeros(0)
            for i in range(3)
        )  # type: ignore[return-value]

    def last_positive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(viewer, author, last ts) per pair with a positive engagement today."""
        if not self._last:
            z = np.zeros(0, np.int64)
            return z, z, z
        v, a, ts = (np.concatenate([x[i] for x in self._last]) for i in range(3))
        keys = pair_key(v, a)
        order = np.lexsort((-ts, keys))
        keys, ts = keys[order], ts[order]
        first = rank_in_groups(keys) == 0
        return key_src(keys[first]), key_dst(keys[first]), ts[first]

    def post_counts(self, n_posts: int) -> np.ndarray:
        out = np.zeros(n_posts + 1)
        for post, count in self._posts:
            out += np.bincount(post, weights=count, minlength=n_posts + 1)
        return out

    def negatives(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._neg:
            z = np.zeros(0, np.int64)
            return z, z, z
        return tuple(np.concatenate([x[i] for x in self._neg]).astype(np.int64) for i in range(3))  # type: ignore[return-value]


def _graph_lines(log: str, ev: GraphEvents, actions: tuple[str, ...]) -> pa.Array:
    a, b = ("follower_id", "followee_id") if log == "follows" else ("blocker_id", "blocked_id")
    return encode(
        log,
        {
            a: json_int(ev.src),
            b: json_int(ev.dst),
            "action": json_enum(ev.action, actions),
            "ts": json_ts(ev.ts),
        },
    )
