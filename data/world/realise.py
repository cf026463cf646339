"""Engagement realisation: a chunk's served lists become timed impressions and the engagements
the truth model draws for them.

Each item is seen after the items above it in its session; the outcome is sampled from the truth
at the impression's own time. What the chunk teaches the world (pair strengths, positive and
negative feedback, what was seen, who was active) goes into the day's `DayAccumulator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from data.world.accumulator import HIDE, REPORT, DayAccumulator
from data.world.content import Posts
from data.world.policy import Served, Sessions
from data.world.truth import (
    ACTIONS,
    INTERACTION_WEIGHTS,
    PairState,
    TruthModel,
    dwell_noise,
    examine_probability,
    sample_outcomes,
)
from data.world.util import hex_ids, pair_key, unique_sorted

# What the simulator emits, by code: its own fixed names. Ingestion validates against the log
# vocabulary (data/vocabulary.toml), which declares every one of them (checked by
# tests/unit/test_contract_vocabulary.py); a team's vocabulary may add names the simulator never writes.
ENGAGEMENT_TYPES = ("like", "comment", "share", "save", "profile_visit", "dwell", "hide", "report")
IMPRESSION_SOURCES = ("in_network", "celebrity", "explore_popular", "explore_random")  # policy.py codes
ENG_CODE = {t: i for i, t in enumerate(ENGAGEMENT_TYPES)}
POSITIVE_COUNTED = ("like", "comment", "share", "save")  # what "popular" means to the policy


@dataclass(frozen=True)
class Impressions:
    """A chunk's impressions that happened before midnight, in served order."""

    request_id: pa.StringArray  # one per session
    viewer: np.ndarray
    post: np.ndarray
    author: np.ndarray
    position: np.ndarray
    surface: np.ndarray  # SURFACES code
    source: np.ndarray  # IMPRESSION_SOURCES code
    ts: np.ndarray  # epoch ms
    probabilities: dict[str, np.ndarray]  # per action, at `ts`
    expected_value: np.ndarray
    examined: np.ndarray
    dwell_ms: np.ndarray
    outcomes: dict[str, np.ndarray]  # per action: bool


@dataclass(frozen=True)
class Engagements:
    """Engagement events, grouped by impression (`row` indexes `Impressions`)."""

    event_id: pa.StringArray
    row: np.ndarray
    type: np.ndarray  # ENG_CODE
    ts: np.ndarray  # epoch ms
    value: np.ndarray  # dwell ms for dwell events, else 0


def realise_chunk(
    rng: np.random.Generator,
    seed: int,
    d: int,
    c: int,
    sessions: Sessions,
    served: Served,
    posts: Posts,
    truth: TruthModel,
    state: PairState,
    day_end: int,
    acc: DayAccumulator,
) -> tuple[Impressions, Engagements]:
    """Impressions and engagements of chunk `c` of day `d` (ids fixed by seed, day and chunk)."""
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
    out = sample_outcomes(rng, sc, pos, examined=examined, noise=noise)
    y, dwell, dwell_event = out.actions, out.dwell_ms, out.dwell_event

    # --- engagement events ---
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

    # --- what the day teaches the world ---
    w = sum(INTERACTION_WEIGHTS[a] * y[a] for a in ACTIONS)
    touched = np.flatnonzero(w != 0)
    positive = np.flatnonzero(w > 0)
    acc.add_pairs(viewer[touched], author[touched], w[touched])
    acc.add_last_positive(viewer[positive], author[positive], ts[positive] + view[positive])
    acc.add_post_counts(post, sum(y[a] for a in POSITIVE_COUNTED))
    acc.add_negative(
        viewer[y["report"]], author[y["report"]], np.full(int(y["report"].sum()), REPORT)
    )
    acc.add_negative(viewer[y["hide"]], author[y["hide"]], np.full(int(y["hide"].sum()), HIDE))
    acc.seen.append(pair_key(viewer, post))
    acc.active.append(unique_sorted(viewer))

    impressions = Impressions(
        request_id=hex_ids(seed, 1, d, c, s),
        viewer=viewer,
        post=post,
        author=author,
        position=pos,
        surface=sessions.surface[s],
        source=served.source[keep],
        ts=ts,
        probabilities=sc.probabilities,
        expected_value=sc.expected_value,
        examined=examined,
        dwell_ms=dwell,
        outcomes=y,
    )
    engagements = Engagements(
        event_id=hex_ids(seed, 2, d, c, np.arange(len(e_i))),
        row=e_i,
        type=e_type,
        ts=e_ts,
        value=e_value,
    )
    return impressions, engagements
