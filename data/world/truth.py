"""The hidden ground truth: what makes a viewer engage with a post.

For viewer i, post p (author j, created c_p, media m_p, latent quality q_p) at time t:

    match  = interests_i . mix_p                   topic fit, in [0, 1]
    aff    = log(1 + S_ij)                         S: decayed past interactions of i with j
    F      = 1 if i visibly follows j, else 0
    age_d  = (t - c_p) / 1 day
    r      = W_MATCH (match - MATCH_CENTER) + W_QUALITY q_p + W_AFFINITY aff + W_FOLLOW F
             - AGE_PER_DAY age_d                   shared relevance

    logit P(a) = ALPHA[a] + BETA[a] r + b_i + MEDIA[a][m_p]        a in like, comment, share,
                 (+ PROFILE_VISIT_OUT_OF_NETWORK (1 - F) for profile_visit)  save, profile_visit
    logit P(a) = NEG_ALPHA[a] - NEG_MATCH (match - MATCH_CENTER) - NEG_QUALITY[a] q_p
                 - NEG_AFFINITY aff - NEG_FOLLOW F + n_i + REGRET g       a in hide, report
    log dwell_ms = mu + DWELL_SCALE * Logistic(0, 1),
        mu = log(DWELL_BASE_MS) + DWELL_R r + DWELL_MEDIA[m_p] + 0.2 b_i
    P(long_dwell) = P(dwell >= LONG_DWELL_MS) = sigmoid((mu - log LONG_DWELL_MS) / DWELL_SCALE)
    P(like) is capped at 1 - P(hide) - P(report): the three exclude each other.

b_i / n_i are the viewer's eagerness to engage / to hide and report; g >= 0 is the viewer's regret
for the author (data/world/regret.py: live mode only; 0 everywhere else). At logging time a mild
position bias applies: a post at 0-based position k is examined with probability
(1 + k / POSITION_DECAY) ** -0.5 and only examined posts get any action; `probabilities()`
returns the position-free P(a) unless `positions` is given. The value of showing p to i is

    expected_value = sum_a TRUE_VALUE_WEIGHTS[a] * P(a)

The pair strength S_ij grows with i's engagements on j's posts and decays daily (see
`update_pair_strength`); it is what makes the logged history predictive. It is persisted per
day so any (viewer, post, time) can be scored later, not only the logged ones.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data import columns as c
from data.days import DAY_MS, day_start_ms
from data.world.util import lookup, pair_key, sigmoid, sorted_union

ACTIONS = ("like", "comment", "share", "save", "profile_visit", "long_dwell", "hide", "report")
POSITIVE_ACTIONS = ACTIONS[:6]
TRUE_VALUE_WEIGHTS: dict[str, float] = {
    "like": 1.0,
    "comment": 4.0,
    "share": 5.0,
    "save": 3.0,
    "profile_visit": 1.5,
    "long_dwell": 1.0,
    "hide": -8.0,
    "report": -30.0,
}
LONG_DWELL_MS = c.LONG_DWELL_MS  # a dwell at least this long counts as the long_dwell action
DWELL_EMIT_MS = 2_000  # shorter dwells are scrolling past: no dwell event is logged

# --- coefficients (see module docstring) ----------------------------------------------------------
W_MATCH, MATCH_CENTER = 5.0, 0.3
W_QUALITY = 0.8
W_AFFINITY = 0.6
W_FOLLOW = 0.4
AGE_PER_DAY = 0.5
ALPHA = {"like": -2.0, "comment": -4.6, "share": -5.2, "save": -4.4, "profile_visit": -4.2}
BETA = {"like": 1.0, "comment": 1.1, "share": 1.0, "save": 1.05, "profile_visit": 0.8}
# Media effects per action (photo, video, carousel): videos get shared, carousels saved.
MEDIA = {
    "like": (0.0, -0.1, 0.1),
    "comment": (0.0, -0.1, 0.0),
    "share": (0.0, 0.5, 0.0),
    "save": (0.0, 0.0, 0.6),
    "profile_visit": (0.0, 0.1, 0.1),
}
PROFILE_VISIT_OUT_OF_NETWORK = 0.7  # curiosity about authors one does not follow yet
NEG_ALPHA = {"hide": -5.6, "report": -8.2}
NEG_MATCH = 4.5
NEG_QUALITY = {"hide": 0.6, "report": 1.2}
NEG_AFFINITY = 0.5
NEG_FOLLOW = 0.8
REGRET = 1.0  # per unit of regret pressure (a fresh report: 3, ~20x the odds of a hide)
DWELL_BASE_MS, DWELL_R, DWELL_SCALE = 2_600.0, 0.45, 0.8
DWELL_MEDIA = (0.0, 0.6, 0.3)
POSITION_DECAY = 5.0  # examine(k) = (1 + k / POSITION_DECAY) ** -0.5

# Pair strength: S <- PAIR_DECAY * S + sum of these per engagement of i on j's posts (floored at 0).
PAIR_DECAY = 0.85
INTERACTION_WEIGHTS = {
    "like": 1.0,
    "comment": 2.0,
    "share": 2.0,
    "save": 1.5,
    "profile_visit": 1.0,
    "long_dwell": 0.5,
    "hide": -1.0,
    "report": -3.0,
}
PAIR_PRUNE = 0.05  # weaker non-follow pairs are forgotten, which keeps the state bounded


def examine_probability(positions: np.ndarray) -> np.ndarray:
    return (1.0 + np.asarray(positions, dtype=np.float64) / POSITION_DECAY) ** -0.5


@dataclass
class PairState:
    """Per (viewer, author): interaction strength S and whether the viewer follows the author."""

    keys: np.ndarray  # sorted pair_key(viewer, author)
    strength: np.ndarray  # float32
    follows: np.ndarray  # bool

    @staticmethod
    def empty() -> PairState:
        return PairState(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool))

    def get(self, viewer: np.ndarray, author: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, found = lookup(self.keys, pair_key(viewer, author))
        if len(self.keys) == 0:
            return np.zeros(len(pos), np.float32), np.zeros(len(pos), bool)
        return np.where(found, self.strength[pos], 0.0), found & self.follows[pos]

    def to_table(self) -> pa.Table:
        return pa.table(
            {
                "viewer_id": (self.keys >> 32).astype(np.int64),
                "author_id": (self.keys & 0xFFFFFFFF).astype(np.int64),
                "strength": self.strength.astype(np.float32),
                "follows": self.follows,
            }
        )

    @staticmethod
    def from_frame(df: pd.DataFrame | pa.Table) -> PairState:
        """From columns viewer_id, author_id, strength and (optionally) follows."""
        if isinstance(df, pa.Table):
            df = df.to_pandas()
        keys = pair_key(df["viewer_id"].to_numpy(), df["author_id"].to_numpy())
        order = np.argsort(keys, kind="stable")
        follows = df["follows"].to_numpy(bool) if "follows" in df else np.zeros(len(df), bool)
        return PairState(keys[order], df["strength"].to_numpy(np.float32)[order], follows[order])

    def with_follows(self, follow_keys: np.ndarray) -> PairState:
        """The same strengths, with `follows` set exactly for follow_keys (sorted)."""
        keys = sorted_union(self.keys, follow_keys)
        strength = np.zeros(len(keys), np.float32)
        strength[np.searchsorted(keys, self.keys)] = self.strength
        follows = np.zeros(len(keys), bool)
        follows[np.searchsorted(keys, follow_keys)] = True
        return PairState(keys, strength, follows)


def update_pair_strength(
    state: PairState, viewer: np.ndarray, author: np.ndarray, action_weight: np.ndarray
) -> PairState:
    """One day passes: decay every pair, add today's (weighted) engagements, prune weak pairs."""
    k_new = pair_key(viewer, author)
    keys = sorted_union(state.keys, k_new)
    s = np.zeros(len(keys), np.float64)
    s[np.searchsorted(keys, state.keys)] = PAIR_DECAY * state.strength
    s += np.bincount(np.searchsorted(keys, k_new), weights=action_weight, minlength=len(keys))
    s = np.maximum(s, 0.0)
    keep = s >= PAIR_PRUNE
    return PairState(keys[keep], s[keep].astype(np.float32), np.zeros(int(keep.sum()), bool))


@dataclass
class UserLatents:
    interests: np.ndarray  # (n+1, T)
    propensity: np.ndarray
    negativity: np.ndarray


@dataclass
class PostLatents:
    author: np.ndarray
    created_ms: np.ndarray
    media: np.ndarray
    mix: np.ndarray  # (n+1, T)
    quality: np.ndarray


@dataclass
class Scores:
    """Everything the truth says about a batch of (viewer, post, time) candidates."""

    probabilities: dict[str, np.ndarray]  # position-free P(action), per ACTIONS
    dwell_mu: np.ndarray  # location of log dwell time (ms)
    match: np.ndarray

    @property
    def expected_value(self) -> np.ndarray:
        return sum(TRUE_VALUE_WEIGHTS[a] * self.probabilities[a] for a in ACTIONS)


@dataclass
class Outcomes:
    """What viewers did with served posts (realised actions), as the simulator logs them."""

    examined: np.ndarray
    dwell_ms: np.ndarray  # time on the post (a short flick when not examined)
    actions: dict[str, np.ndarray]  # bool per ACTIONS

    @property
    def dwell_event(self) -> np.ndarray:
        """Dwell rows are only logged for meaningful dwells."""
        return self.examined & (self.dwell_ms > DWELL_EMIT_MS)


def dwell_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Standard logistic draws scaled by DWELL_SCALE: log(dwell) = dwell_mu + noise."""
    u = np.clip(rng.random(n), 1e-9, 1 - 1e-9)
    return DWELL_SCALE * np.log(u / (1 - u))


def sample_outcomes(
    rng: np.random.Generator,
    scores: Scores,
    positions: np.ndarray,
    examined: np.ndarray | None = None,
    noise: np.ndarray | None = None,
) -> Outcomes:
    """Draw realised actions for posts served at `positions` (position bias included).

    Reusable by a simulated online test: score a ranker's lists with `TruthModel.scores`, then
    draw what users did. like / hide / report share one uniform draw so they exclude each other
    while keeping their marginal probabilities; long_dwell is dwell >= LONG_DWELL_MS.
    """
    p = scores.probabilities
    n = len(scores.dwell_mu)
    if examined is None:
        examined = rng.random(n) < examine_probability(positions)
    if noise is None:
        noise = dwell_noise(rng, n)
    flick = rng.integers(300, 1500, n)
    dwell = np.where(
        examined, np.clip(np.exp(scores.dwell_mu + noise), 300, 600_000), flick
    ).astype(np.int64)
    u = rng.random(n)
    y = {
        "report": examined & (u < p["report"]),
        "hide": examined & (u >= p["report"]) & (u < p["report"] + p["hide"]),
        "like": examined & (u > 1.0 - p["like"]),
    }
    for a in ("comment", "share", "save", "profile_visit"):
        y[a] = examined & (rng.random(n) < p[a])
    y["long_dwell"] = examined & (dwell >= LONG_DWELL_MS)
    return Outcomes(examined, dwell, {a: y[a] for a in ACTIONS})


class TruthModel:
    """Vectorised scorer of the hidden engagement model, reusable on ANY candidate.

    >>> truth = TruthModel.load(truth_dir)
    >>> p = truth.probabilities(viewer_ids, post_ids, ts)   # dict action -> array
    >>> v = truth.expected_value(viewer_ids, post_ids, ts)  # sum_a TRUE_VALUE_WEIGHTS[a] P(a)

    `ts` is epoch ms (int), numpy datetime64 or pandas timestamps. `interactions` is the pair
    state to score with: None uses the simulated state of the day of each ts (state at the start
    of that day; after the last day, the final state), or pass a PairState / DataFrame (e.g. the
    state a simulated A/B arm produced).
    """

    def __init__(
        self,
        users: UserLatents,
        posts: PostLatents,
        start: date,
        n_days: int,
        pair_states: dict[int, PairState] | None = None,
        truth_dir: Path | None = None,
    ):
        self.users, self.posts = users, posts
        self.start, self.n_days = start, n_days
        self.start_ms = day_start_ms(start)
        self._states: OrderedDict[int, PairState] = OrderedDict(pair_states or {})
        self._dir = truth_dir

    # --- scoring ----------------------------------------------------------------------------------
    def scores(
        self,
        viewer_ids: np.ndarray,
        post_ids: np.ndarray,
        ts: np.ndarray,
        interactions: PairState | pd.DataFrame | None = None,
        regret: np.ndarray | None = None,
    ) -> Scores:
        """`regret`: the viewer's regret pressure per candidate (data/world/regret.py; None: none)."""
        viewer = np.asarray(viewer_ids, dtype=np.int64)
        post = np.asarray(post_ids, dtype=np.int64)
        ts_ms = _to_ms(ts, len(post))
        author = self.posts.author[post]
        strength, follows = self._pair_lookup(viewer, author, ts_ms, interactions)

        # Row-wise dot product in float32 chunks: (n, T) temporaries stay small.
        match = np.einsum("ij,ij->i", self.users.interests[viewer], self.posts.mix[post]).astype(
            np.float64
        )
        q = self.posts.quality[post].astype(np.float64)
        aff = np.log1p(strength.astype(np.float64))
        fol = follows.astype(np.float64)
        age_d = np.maximum(ts_ms - self.posts.created_ms[post], 0) / DAY_MS
        m = self.posts.media[post]
        b = self.users.propensity[viewer].astype(np.float64)
        neg = self.users.negativity[viewer].astype(np.float64)

        r = (
            W_MATCH * (match - MATCH_CENTER)
            + W_QUALITY * q
            + W_AFFINITY * aff
            + W_FOLLOW * fol
            - AGE_PER_DAY * age_d
        )
        p: dict[str, np.ndarray] = {}
        for a in ("like", "comment", "share", "save", "profile_visit"):
            logit = ALPHA[a] + BETA[a] * r + b + np.asarray(MEDIA[a])[m]
            if a == "profile_visit":
                logit = logit + PROFILE_VISIT_OUT_OF_NETWORK * (1.0 - fol)
            p[a] = sigmoid(logit)
        mu = np.log(DWELL_BASE_MS) + DWELL_R * r + np.asarray(DWELL_MEDIA)[m] + 0.2 * b
        p["long_dwell"] = sigmoid((mu - np.log(LONG_DWELL_MS)) / DWELL_SCALE)
        for a in ("hide", "report"):
            logit = (
                NEG_ALPHA[a]
                - NEG_MATCH * (match - MATCH_CENTER)
                - NEG_QUALITY[a] * q
                - NEG_AFFINITY * aff
                - NEG_FOLLOW * fol
                + neg
                + (0.0 if regret is None else REGRET * regret)
            )
            p[a] = sigmoid(logit)
        # like, hide and report exclude each other (one uniform draws all three at logging time).
        p["like"] = np.minimum(p["like"], 1.0 - p["hide"] - p["report"])
        return Scores({a: p[a] for a in ACTIONS}, mu, match)

    def probabilities(
        self,
        viewer_ids: np.ndarray,
        post_ids: np.ndarray,
        ts: np.ndarray,
        interactions: PairState | pd.DataFrame | None = None,
        positions: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """P(action) per ACTIONS; with `positions`, the probability of it happening when served
        at those 0-based positions (position bias included)."""
        p = self.scores(viewer_ids, post_ids, ts, interactions).probabilities
        if positions is not None:
            e = examine_probability(positions)
            p = {a: v * e for a, v in p.items()}
        return p

    def expected_value(
        self,
        viewer_ids: np.ndarray,
        post_ids: np.ndarray,
        ts: np.ndarray,
        interactions: PairState | pd.DataFrame | None = None,
        probabilities: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        p = probabilities or self.probabilities(viewer_ids, post_ids, ts, interactions)
        return sum(TRUE_VALUE_WEIGHTS[a] * p[a] for a in ACTIONS)

    # --- pair state -------------------------------------------------------------------------------
    def day_index(self, ts_ms: np.ndarray) -> np.ndarray:
        """Which stored state applies: 0..n_days (n_days = the state after the last day)."""
        return np.clip((ts_ms - self.start_ms) // DAY_MS, 0, self.n_days)

    def pair_state(self, day: int | date) -> PairState:
        d = (day - self.start).days if isinstance(day, date) else int(day)
        d = min(max(d, 0), self.n_days)
        if d in self._states:
            self._states.move_to_end(d)
            return self._states[d]
        if self._dir is None:
            raise KeyError(f"no pair state for day {d}")
        path = self._dir / "pair_state" / f"{self.start + timedelta(days=d)}.parquet"
        state = PairState.from_frame(pq.read_table(path))
        self._states[d] = state
        while len(self._states) > 3:  # a few days in memory: each can be millions of pairs
            self._states.popitem(last=False)
        return state

    def _pair_lookup(self, viewer, author, ts_ms, interactions) -> tuple[np.ndarray, np.ndarray]:
        if interactions is not None:
            state = (
                interactions
                if isinstance(interactions, PairState)
                else PairState.from_frame(interactions)
            )
            return state.get(viewer, author)
        strength = np.zeros(len(viewer), np.float32)
        follows = np.zeros(len(viewer), bool)
        day = self.day_index(ts_ms)
        for d in np.unique(day):
            rows = np.flatnonzero(day == d)
            strength[rows], follows[rows] = self.pair_state(int(d)).get(viewer[rows], author[rows])
        return strength, follows

    # --- persistence ------------------------------------------------------------------------------
    @classmethod
    def load(cls, truth_dir: Path | str) -> TruthModel:
        truth_dir = Path(truth_dir)
        meta = json.loads((truth_dir / "meta.json").read_text())
        t = meta["n_topics"]
        users = pq.read_table(truth_dir / "users.parquet").to_pandas()
        posts_table = pq.read_table(truth_dir / "posts.parquet")
        created = posts_table.column("created_at").cast(pa.int64()).to_numpy()  # epoch ms
        posts = posts_table.to_pandas()
        n_u, n_p = int(users["user_id"].max()), int(posts["post_id"].max())

        def dense(ids: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
            out = np.zeros((n + 1, *values.shape[1:]), dtype=values.dtype)
            out[ids] = values
            return out

        uid, pid = users["user_id"].to_numpy(), posts["post_id"].to_numpy()
        u = UserLatents(
            interests=dense(
                uid, users[[f"interest_{k:02d}" for k in range(t)]].to_numpy(np.float32), n_u
            ),
            propensity=dense(uid, users["propensity"].to_numpy(np.float32), n_u),
            negativity=dense(uid, users["negativity"].to_numpy(np.float32), n_u),
        )
        p = PostLatents(
            author=dense(pid, posts["author_id"].to_numpy(np.int64), n_p),
            created_ms=dense(pid, created, n_p),
            media=dense(pid, posts["media_code"].to_numpy(np.int64), n_p),
            mix=dense(pid, posts[[f"mix_{k:02d}" for k in range(t)]].to_numpy(np.float32), n_p),
            quality=dense(pid, posts["quality"].to_numpy(np.float32), n_p),
        )
        return cls(u, p, date.fromisoformat(meta["start"]), meta["n_days"], truth_dir=truth_dir)


def _to_ms(ts, n: int) -> np.ndarray:
    if np.isscalar(ts) or isinstance(ts, (pd.Timestamp, np.datetime64)):
        ts = [ts] * n
    if isinstance(ts, (pd.Series, pd.Index)):
        if pd.api.types.is_datetime64_any_dtype(ts):
            ts = (
                ts.dt.tz_convert(None) if isinstance(ts, pd.Series) and ts.dt.tz is not None else ts
            )
            return pd.to_datetime(ts).to_numpy().astype("datetime64[ms]").astype(np.int64)
        ts = ts.to_numpy()
    arr = np.asarray(ts)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ms]").astype(np.int64)
    if arr.dtype == object:
        return (
            pd.to_datetime(arr, utc=True)
            .tz_convert(None)
            .to_numpy()
            .astype("datetime64[ms]")
            .astype(np.int64)
        )
    return arr.astype(np.int64)
