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
  5. the day's users/posts/follows/blocks rows are written (log_lines.py), and the day's stories:
     posted by the accounts of the day, each live 24 h, a few deleted by their author before that
     (drawn from a stream of their own, so no other log's draws depend on them);
  6. the moderation classifier labels the day's new posts (the post_labels log, its own stream
     too): a truly borderline post (the world's lowest `borderline_quality_share` of quality) is
     flagged with `label_true_positive_rate`, any other with `label_false_positive_rate`, each
     label landing on the day it is made (truth: post_integrity.parquet).
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

from data.columns import BLOCK_ACTIONS, FOLLOW_ACTIONS, STORY_TTL_MS, WORLD_SEED, WORLD_START
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
    post_label_lines,
    post_lines,
    story_lines,
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
    write_post_integrity,
    write_static,
)
from data.world.util import AlignedRows, rng_for, sorted_union, unique_sorted

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
    output of a previous run (the log folders, the truth files) is replaced.
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


@dataclass(frozen=True)
class Stories(AlignedRows):
    """Story rows (creations, or deletions: `deleted_ms` >= 0), arrays aligned by row."""

    story_id: np.ndarray
    author: np.ndarray
    created_ms: np.ndarray
    media: np.ndarray  # index into STORY_MEDIA_TYPES (photo, video)
    deleted_ms: np.ndarray  # -1 on a creation row


def draw_stories(
    rng: np.random.Generator,
    cfg: WorldConfig,
    users: Users,
    day_start: int,
    day_end: int,
    first_id: int,
) -> tuple[Stories, Stories]:
    """The day's stories (ids from `first_id`, in creation order) and their deletions.

    Every account that exists during the day posts a Poisson(`stories_per_user_day`) number of
    stories, each at a uniform time between the day's start (or the sign-up) and its end, a photo or
    a video as the author's media taste leans; `story_delete_share` of them are deleted by their
    author at a uniform time while they are live (within STORY_TTL_MS of the creation: the
    deletion may fall on the next day).
    """
    authors = np.arange(1, users.n + 1)[users.created_ms[1:] < day_end]
    author = np.repeat(authors, rng.poisson(cfg.stories_per_user_day, len(authors)))
    lo = np.maximum(users.created_ms[author], day_start)
    created = lo + np.floor(rng.random(len(author)) * (day_end - lo)).astype(np.int64)
    order = np.argsort(created, kind="stable")
    author, created = author[order], created[order]
    pref = users.media_pref[author]
    p_video = pref[:, 1] / (pref[:, 0] + pref[:, 1])
    media = (rng.random(len(author)) < p_video).astype(np.int64)
    n = len(author)
    ids = first_id + np.arange(n, dtype=np.int64)
    made = Stories(ids, author, created, media, np.full(n, -1, np.int64))
    gone = np.flatnonzero(rng.random(n) < cfg.story_delete_share)
    deleted_ms = created[gone] + 1 + np.floor(rng.random(len(gone)) * (STORY_TTL_MS - 1)).astype(np.int64)
    deletions = Stories(ids[gone], author[gone], created[gone], media[gone], deleted_ms)
    return made, deletions


# The moderation classifier: a label comes a little after the post (exponential delay, this mean),
# its score from Beta(a, b), higher for a truly borderline post than for a false flag.
LABEL_DELAY_MEAN_MS = 2 * 3600 * 1000
TRUE_LABEL_SCORE = (6.0, 2.0)  # mean 0.75
FALSE_LABEL_SCORE = (2.0, 4.0)  # mean 0.33


@dataclass(frozen=True)
class PostLabels(AlignedRows):
    """The classifier's borderline labels, arrays aligned by row."""

    post_id: np.ndarray
    score: np.ndarray
    ts_ms: np.ndarray


def truly_borderline(cfg: WorldConfig, posts: Posts) -> np.ndarray:
    """Per post id (index 0: padding, False): whether the post is truly borderline, i.e. among the
    world's lowest `borderline_quality_share` of latent quality (one threshold for the world)."""
    out = np.zeros(posts.n + 1, bool)
    if posts.n:
        quality = posts.quality[1:]
        out[1:] = quality <= np.quantile(quality, cfg.borderline_quality_share)
    return out


def draw_post_labels(
    rng: np.random.Generator,
    cfg: WorldConfig,
    posts: Posts,
    borderline: np.ndarray,
    lo: float,
    day_end: int,
) -> PostLabels:
    """The classifier's labels of the posts created in [lo, day_end), in time order: a truly
    borderline post is flagged with `label_true_positive_rate`, another with
    `label_false_positive_rate`; a flag's score is drawn from TRUE_LABEL_SCORE or FALSE_LABEL_SCORE,
    its time an exponential delay (mean LABEL_DELAY_MEAN_MS) after the post's creation."""
    ids = np.flatnonzero((posts.created_ms >= lo) & (posts.created_ms < day_end))
    ids = ids[ids > 0]
    truly = borderline[ids]
    p_flag = np.where(truly, cfg.label_true_positive_rate, cfg.label_false_positive_rate)
    flagged = rng.random(len(ids)) < p_flag
    ids, truly = ids[flagged], truly[flagged]
    n = len(ids)
    score = np.where(truly, rng.beta(*TRUE_LABEL_SCORE, n), rng.beta(*FALSE_LABEL_SCORE, n))
    ts = posts.created_ms[ids] + 1 + np.floor(rng.exponential(LABEL_DELAY_MEAN_MS, n)).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    return PostLabels(ids[order], np.clip(score[order], 1e-4, 1 - 1e-4), ts[order])


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
        self.next_story_id = 1
        self.story_deletions: dict[int, list[Stories]] = {}  # landing day -> deletion rows
        self.borderline = truly_borderline(cfg, self.posts)
        self.post_labels: dict[int, list[PostLabels]] = {}  # landing day -> label rows

    def run(self) -> None:
        write_static(self.truth_dir, self.cfg, self.seed, self.days, self.users, self.posts)
        write_post_integrity(self.truth_dir, self.borderline)
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
        self._stories(d, day_start, day_end)
        self._post_labels(d, day_start, day_end)

    def _defer(self, landing: dict[int, list], rows: AlignedRows, ts_ms: np.ndarray) -> None:
        """File `rows` under the day each lands on (`landing`: day -> rows), by its time; a time
        before the world lands on day 0."""
        on_day = np.maximum((ts_ms - self.start_ms) // DAY_MS, 0)
        for day in np.unique(on_day):
            landing.setdefault(int(day), []).append(rows.take(np.flatnonzero(on_day == day)))

    def _stories(self, d: int, day_start: int, day_end: int) -> None:
        """Write the day's stories file: today's stories, and the deletions that happen today (of
        today's and yesterday's stories). Deletions after the world's last day are not exported."""
        made, deletions = draw_stories(
            rng_for(self.seed, "stories", d), self.cfg, self.users, day_start, day_end, self.next_story_id
        )
        self.next_story_id += len(made)
        self._defer(self.story_deletions, deletions, deletions.deleted_ms)
        rows = Stories.concat([made, *self.story_deletions.pop(d, [])])
        self.writer.write(
            "stories",
            d,
            0,
            story_lines(rows.story_id, rows.author, rows.created_ms, rows.media, rows.deleted_ms),
        )

    def _post_labels(self, d: int, day_start: int, day_end: int) -> None:
        """Write the day's post_labels file: the labels made today (of today's posts, of yesterday's
        just before midnight; on day 0 of every post so far, those made before the world land on
        day 0). Labels made after the world's last day are not exported."""
        lo = -np.inf if d == 0 else day_start
        made = draw_post_labels(
            rng_for(self.seed, "post_labels", d), self.cfg, self.posts, self.borderline, lo, day_end
        )
        self._defer(self.post_labels, made, made.ts_ms)
        rows = PostLabels.concat([PostLabels(*(np.zeros(0, t) for t in (np.int64, np.float64, np.int64))),
                                  *self.post_labels.pop(d, [])])
        self.writer.write("post_labels", d, 0, post_label_lines(rows.post_id, rows.score, rows.ts_ms))
