"""The truth folder: what the world really was, for scoring rankers and policies against.

    users.parquet, posts.parquet, meta.json    latents and the model's constants, written once
    post_integrity.parquet                     per post: whether it is truly borderline (the
                                               moderation classifier's target; post_labels log)
    pair_state/<day>.parquet                   the truth's pair state in force on that day
    impressions/<day>.parquet                  per impression: probabilities, outcomes, dwell
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data.columns import MEDIA_TYPES, SURFACES, WORLD_START
from data.world.config import WorldConfig
from data.world.content import NEVER, Posts, topic_names
from data.world.graph import COUNTRY_CODES, Users
from data.world.policy import MODEL_VERSION
from data.world.realise import IMPRESSION_SOURCES, Impressions
from data.world.truth import (
    ACTIONS,
    DWELL_EMIT_MS,
    INTERACTION_WEIGHTS,
    LONG_DWELL_MS,
    PAIR_DECAY,
    TRUE_VALUE_WEIGHTS,
    PairState,
    examine_probability,
)

TRUTH_IMPRESSION_SCHEMA = pa.schema(
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


def reset_truth(truth_dir: Path) -> None:
    """Remove a previous run's truth files (anything else in the folder stays); make the layout."""
    for sub in ("pair_state", "impressions"):
        shutil.rmtree(truth_dir / sub, ignore_errors=True)
    for name in ("users.parquet", "posts.parquet", "meta.json", "post_integrity.parquet"):
        (truth_dir / name).unlink(missing_ok=True)
    (truth_dir / "pair_state").mkdir(parents=True, exist_ok=True)
    (truth_dir / "impressions").mkdir(parents=True, exist_ok=True)


def impression_writer(truth_dir: Path, day: date) -> pq.ParquetWriter:
    """The day's impressions/<day>.parquet, written chunk by chunk (`impression_table`)."""
    return pq.ParquetWriter(truth_dir / "impressions" / f"{day}.parquet", TRUTH_IMPRESSION_SCHEMA)


def impression_table(imp: Impressions) -> pa.Table:
    p, y = imp.probabilities, imp.outcomes
    return pa.table(
        {
            "request_id": imp.request_id,
            "viewer_id": imp.viewer,
            "post_id": imp.post,
            "author_id": imp.author,
            "position": imp.position.astype(np.int32),
            "surface": pa.array(np.asarray(SURFACES)[imp.surface]),
            "source": pa.array(np.asarray(IMPRESSION_SOURCES)[imp.source]),
            "ts": pa.array(imp.ts.astype("datetime64[ms]")).cast(pa.timestamp("ms", tz="UTC")),
            **{f"p_{a}": p[a].astype(np.float32) for a in ACTIONS},
            "expected_value": imp.expected_value.astype(np.float32),
            "examine_p": examine_probability(imp.position).astype(np.float32),
            "examined": imp.examined,
            "dwell_ms": imp.dwell_ms.astype(np.int32),
            **{f"y_{a}": y[a] for a in ACTIONS},
        },
        schema=TRUTH_IMPRESSION_SCHEMA,
    )


def write_pair_state(truth_dir: Path, d: int, state: PairState) -> None:
    """The pair state in force on day `d` (d == n_days: after the last day)."""
    day = WORLD_START + timedelta(days=d)
    pq.write_table(state.to_table(), truth_dir / "pair_state" / f"{day}.parquet", compression="zstd")


def write_static(
    truth_dir: Path, cfg: WorldConfig, seed: int, days: list[date], u: Users, p: Posts
) -> None:
    """users.parquet, posts.parquet (latents included) and meta.json (the model's constants)."""
    t = cfg.n_topics
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
    pq.write_table(pa.table(users), truth_dir / "users.parquet", compression="zstd")
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
    pq.write_table(pa.table(posts), truth_dir / "posts.parquet", compression="zstd")
    meta = {
        "size": cfg.name,
        "seed": seed,
        "start": WORLD_START.isoformat(),
        "n_days": cfg.days,
        "days": [x.isoformat() for x in days],
        "n_topics": t,
        "topics": list(topic_names(t)),
        "actions": list(ACTIONS),
        "true_value_weights": TRUE_VALUE_WEIGHTS,
        "long_dwell_ms": LONG_DWELL_MS,
        "dwell_emit_ms": DWELL_EMIT_MS,
        "pair_decay": PAIR_DECAY,
        "interaction_weights": INTERACTION_WEIGHTS,
        "model_version": MODEL_VERSION,
        "positions": "0-based",
    }
    (truth_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def write_post_integrity(truth_dir: Path, borderline: np.ndarray) -> None:
    """post_integrity.parquet: post_id, borderline (`borderline` is indexed by post id, 0 unused)."""
    pid = np.arange(1, len(borderline), dtype=np.int64)
    table = pa.table({"post_id": pid, "borderline": borderline[1:]})
    pq.write_table(table, truth_dir / "post_integrity.parquet", compression="zstd")


def _arrow_ts(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms).astype("datetime64[ms]")).cast(pa.timestamp("ms", tz="UTC"))
