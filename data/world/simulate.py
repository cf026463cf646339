"""The day loop: serve feeds, realise engagements from the truth, evolve the graph, write logs.

Per simulated day:
  1. removals take effect first: unfollows, blocks (with the follows they cut) and mutes made
     today never let a post through later the same day (dynamics.py);
  2. the truth's pair state for the day is frozen and persisted (truth_files.py);
  3. viewers are simulated in chunks (bounded memory): sessions -> served lists (the logging
     policy, policy.py) -> impressions -> engagements drawn from the truth model (realise.py);
  4. additions take effect at the end of the day: new follows (on sign-up, background, and
     driven by repeated engagement with an out-of-network author), follow-backs, approvals of
     private accounts, unblocks/unmutes; pair strengths decay and grow with today's engagements;
  5. the day's users/posts/follows/blocks rows are written (log_lines.py).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from data.columns import BLOCK_ACTIONS, FOLLOW_ACTIONS, WORLD_SEED, WORLD_START
from data.contracts import LOG_TYPES
from data.days import DAY_MS, day_start_ms
from data.world.accumulator import DayAccumulator
from data.world.config import WORLD_CONFIGS, WorldConfig
from data.world.content import Posts, make_posts
from data.world.dynamics import GraphDynamics, draw_verifications
from data.world.graph import GraphEvents, Users, make_initial_graph, make_users
from data.world.landing import LandingWriter
from data.world.log_lines import (
    engagement_lines,
    graph_lines,
    impression_lines,
    post_lines,
    user_lines,
)
from data.world.policy import build_pools, make_sessions, serve
from data.world.realise import realise_chunk
from data.world.truth import PairState, PostLatents, TruthModel, UserLatents, update_pair_strength
from data.world.truth_files import (
    impression_table,
    impression_writer,
    reset_truth,
    write_pair_state,
    write_static,
)
from data.world.util import rng_for, sorted_union, unique_sorted

log = logging.getLogger(__name__)


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


def _reset_landing(landing: Path) -> None:
    """Replace a previous run's logs; anything else in the folder stays."""
    for log in LOG_TYPES:
        shutil.rmtree(landing / log, ignore_errors=True)
    landing.mkdir(parents=True, exist_ok=True)


class _World:
    def __init__(self, cfg: WorldConfig, seed: int, landing: Path, truth: Path):
        self.cfg, self.seed, self.truth_dir = cfg, seed, truth
        _reset_landing(landing)
        reset_truth(truth)
        self.start_ms = day_start_ms(WORLD_START)
        self.days = [WORLD_START + timedelta(days=d) for d in range(cfg.days)]
        self.users: Users = make_users(cfg, seed, self.start_ms)
        self.posts: Posts = make_posts(cfg, self.users, seed, self.start_ms)
        self.graph, init_follows, init_blocks = make_initial_graph(
            cfg, self.users, seed, self.start_ms
        )
        self.dynamics = GraphDynamics(cfg, self.users, self.graph)
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
        self.is_verified = self.users.is_verified.copy()
        self.writer = LandingWriter(landing, self.days, seed, cfg.dirt)
        self.hashtags = pa.array(self.posts.hashtags_json, pa.string())
        self.captions = pa.array(self.posts.caption_json, pa.string())

    def run(self) -> None:
        write_static(self.truth_dir, self.cfg, self.seed, self.days, self.users, self.posts)
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
        write_pair_state(self.truth_dir, self.cfg.days, final)

    def _day(self, d: int) -> None:
        cfg, users, dynamics = self.cfg, self.users, self.dynamics
        rng = rng_for(self.seed, "day", d)
        day_start = self.start_ms + d * DAY_MS
        day_end = day_start + DAY_MS
        f_rows = self.follow_rows.setdefault(d, [])
        b_rows = self.block_rows.setdefault(d, [])
        existing = np.flatnonzero(users.created_ms < day_start)
        existing = existing[existing > 0]

        # 1) removals, effective for the whole day
        unfollowed = dynamics.unfollows(rng, day_start, f_rows)
        unblock_keys, unmute_keys = dynamics.pick_unblocks(rng)
        dynamics.blocks_and_mutes(rng, day_start, existing, f_rows, b_rows)

        # 2) the truth's state of the day
        state = self.pairs.with_follows(self.graph.visible_keys())
        write_pair_state(self.truth_dir, d, state)

        # 3) serve and engage, chunk by chunk
        seen = sorted_union(self.seen_prev, self.seen_prev2)
        pools = build_pools(
            cfg, d, day_start, users, self.posts, self.graph, self.post_engagements, seen
        )
        alive = np.arange(1, users.n + 1)[users.created_ms[1:] < day_end]
        acc = DayAccumulator()
        truth_impressions = impression_writer(self.truth_dir, self.days[d])
        n_chunks = max(1, -(-len(alive) // cfg.viewer_chunk))
        for c, chunk in enumerate(np.array_split(alive, n_chunks)):
            crng = rng_for(self.seed, "serve", d, c)
            sessions = make_sessions(crng, cfg, users, chunk, pools)
            served = serve(crng, cfg, sessions, pools, self.posts, self.graph)
            imp, eng = realise_chunk(
                crng, self.seed, d, c, sessions, served, self.posts, self.truth, state, day_end, acc
            )
            self.writer.write("impressions", d, c, impression_lines(imp))
            self.writer.write("engagements", d, c, engagement_lines(imp, eng))
            truth_impressions.write_table(impression_table(imp))
        truth_impressions.close()

        # 4) additions, effective from tomorrow
        self.pairs = update_pair_strength(self.pairs, *acc.pairs())
        dynamics.new_follows(rng, d, day_start, day_end, acc, self.pairs, unfollowed, f_rows)
        dynamics.apply_unblocks(rng, day_start, unblock_keys, unmute_keys, b_rows)
        self.post_engagements += acc.post_counts(self.posts.n)
        self.seen_prev2, self.seen_prev = (
            self.seen_prev,
            unique_sorted(np.concatenate(acc.seen)) if acc.seen else np.zeros(0, np.int64),
        )
        dynamics.plan_reactions(rng_for(self.seed, "reactions", d), acc)

        # 5) the day's slowly changing logs
        verified, verified_ts = draw_verifications(rng, users.created_ms, self.is_verified, day_start)
        self.writer.write(
            "users",
            d,
            0,
            user_lines(users, self.is_verified, d, day_start, day_end, verified, verified_ts),
        )
        self.is_verified[verified] = True
        self.writer.write(
            "posts", d, 0, post_lines(self.posts, self.hashtags, self.captions, d, day_start, day_end)
        )
        for log, rows, actions in (
            ("follows", f_rows, FOLLOW_ACTIONS),
            ("blocks", b_rows, BLOCK_ACTIONS),
        ):
            ev = GraphEvents.concat(rows)
            self.writer.write(log, d, 0, graph_lines(log, ev, actions))
        del self.follow_rows[d], self.block_rows[d]
