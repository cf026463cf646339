"""What the social Explore source reads: each user's recently engaged posts and each viewer's
strongest-affinity accounts, as of the end of a day, plus the live write of a fresh engagement.

`engaged:<u>` (ZSET post member -> time of u's latest positive engagement, ms): posts u liked,
commented, shared, saved, visited the author's profile from or dwelt on for at least LONG_DWELL_MS
in the last `engaged_days`, newest `engaged_cap` kept; never u's own posts, nor posts u hid or
reported, nor posts deleted or older than `feed.max_age_days` at the end of the day. The daily build
merges into the set (newer scores win, then old and surplus entries are trimmed) rather than
replacing it, so engagements recorded live by `record_engagement` after the day's end survive.

`affinity:<v>` (ZSET author id -> engagement_score_decayed): the viewer's top `affinity_n` authors
of the day's `viewer_author` feature snapshot with a positive score, replaced atomically.

Point in time: lake rows landed on or before the day and dated before its end; the feature snapshot
of the day itself (already cut at the end of the day).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.explore.configs import SocialConfig
from candidate_gen.explore.frames import as_of, event_weights, live_posts, top_per_group
from candidate_gen.explore.lake_reads import TS_MS, lookback_first_day, read_engagements, read_posts, require_day
from candidate_gen.explore.redis_writer import BatchedPipeline, grouped, post_members, zadd_args
from candidate_gen.keys import Keys
from candidate_gen.records import member
from candidate_gen.scripts import LUA_DIR, Script
from data import columns as c
from data.days import day_end_ms
from data.vocabulary import load_vocabulary

# Positive engagements: any weight > 0 marks one (a short dwell weighs 0: it is not one). Roles from
# the shipped log vocabulary (a workspace's own LOUPE_VOCABULARY is not threaded through here yet).
POSITIVE = {t: 1.0 for t in load_vocabulary().names_with_role("positive", "dwell")}
NEGATIVE = {t: 1.0 for t in load_vocabulary().names_with_role("negative")}
SCORE = "engagement_score_decayed"


# --- pure frame computations -----------------------------------------------------------------------


def recent_engaged(
    eng: pd.DataFrame, live: pd.DataFrame, day: str, scfg: SocialConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, dropped) as of the end of `day`, each viewer_id, post_id, author_id, ts_ms sorted by
    viewer then newest first.

    kept: per user, the newest `engaged_cap` posts they engaged positively in the last
    `engaged_days` (ts_ms = their latest positive engagement), among `live` posts, not their own,
    not hidden or reported by them. dropped: the pairs they hid or reported (to remove from sets
    merged by earlier builds or live writes).
    """
    end = day_end_ms(day)
    rows = as_of(eng, day)
    rows = rows[(rows[TS_MS] >= end - scfg.engaged_ms) & (rows[c.VIEWER_ID] != rows[c.AUTHOR_ID])]
    pair = [c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID]
    negative = rows.loc[event_weights(rows, NEGATIVE) > 0, pair].drop_duplicates()
    positive = rows.loc[event_weights(rows, POSITIVE) > 0, [*pair, TS_MS]]
    positive = positive[positive[c.POST_ID].isin(live[c.POST_ID])]
    latest = positive.groupby(pair, sort=False)[TS_MS].max().reset_index()
    hidden = pd.MultiIndex.from_frame(latest[pair]).isin(pd.MultiIndex.from_frame(negative[pair]))
    latest = latest[~hidden]
    latest = top_per_group(latest, c.VIEWER_ID, [(TS_MS, False), (c.POST_ID, False)], scfg.engaged_cap)
    return latest, negative.sort_values(c.VIEWER_ID, kind="stable").reset_index(drop=True)


def top_affinity(pairs: pd.DataFrame, scfg: SocialConfig) -> pd.DataFrame:
    """viewer_id, author_id, score: per viewer the `affinity_n` authors of highest positive
    engagement_score_decayed (never the viewer), sorted by viewer then score."""
    rows = pairs[(pairs[SCORE] > 0) & (pairs[c.VIEWER_ID] != pairs[c.AUTHOR_ID])]
    rows = top_per_group(rows, c.VIEWER_ID, [(SCORE, False), (c.AUTHOR_ID, True)], scfg.affinity_n)
    return pd.DataFrame({c.VIEWER_ID: rows[c.VIEWER_ID].to_numpy("int64"),
                         c.AUTHOR_ID: rows[c.AUTHOR_ID].to_numpy("int64"),
                         "score": rows[SCORE].to_numpy("float64")})


def read_affinity(lake_dir: Path, day: str) -> pd.DataFrame:
    """viewer_id, author_id, engagement_score_decayed of the day's viewer_author snapshot."""
    # Imported here: features.storage loads pyspark, which the serving path (record_engagement)
    # must not pay for.
    from features.jobs.inputs import MissingInputError
    from features.storage import feature_partition_dir
    from features.tables import RELATIONSHIP

    path = feature_partition_dir(lake_dir, RELATIONSHIP, day)
    if not (path / "_SUCCESS").exists():
        raise MissingInputError(f"feature snapshot {RELATIONSHIP.name} {day} is missing: {path}")
    table = pads.dataset(str(path), format="parquet").to_table(columns=[c.VIEWER_ID, c.AUTHOR_ID, SCORE])
    return table.to_pandas()


# --- Redis writes ----------------------------------------------------------------------------------


# Merge engagements into one user's set in one step: newer times win (ZADD GT), hidden posts go,
# then entries older than the cutoff and all but the newest `cap`, and the TTL restarts.
_MERGE_ENGAGED = (LUA_DIR / "merge_engaged.lua").read_text()


def record_engagement(client: redis.Redis, keys: Keys, viewer_id: int, post_id: int, author_id: int,
                      ts_ms: int, cap: int, ttl_s: int = SocialConfig().engaged_ttl_s) -> None:
    """A fresh positive engagement of `viewer_id` (the serving layer decides it is one: a like,
    comment, share, save, profile visit or long dwell) into their engaged set: one round trip.
    Own posts are ignored; a repeated engagement only moves the post's time forward."""
    if viewer_id == author_id:
        return
    key = keys.engaged(viewer_id)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {member(post_id, author_id): ts_ms}, gt=True)
    pipe.zremrangebyrank(key, 0, -(cap + 1))
    pipe.expire(key, ttl_s)
    pipe.execute()


# --- the builder -----------------------------------------------------------------------------------


def build_social(lake_dir: Path, day: str, client: redis.Redis, cfg: CandidateConfig) -> dict:
    """Users' recently engaged posts and viewers' top-affinity authors as of the end of `day` into
    Redis; returns stats for the Dagster metadata."""
    started = time.perf_counter()
    scfg = SocialConfig.from_section(cfg.section("social"))
    keys = cfg.keys
    require_day(lake_dir, day)
    eng = read_engagements(lake_dir, lookback_first_day(day, scfg.engaged_ms), day)
    # Posts that can still be served: created within max age and not deleted by the end of the day.
    max_age_ms = cfg.feed.max_age_ms
    posts = read_posts(lake_dir, day, first=lookback_first_day(day, max_age_ms))
    live = live_posts(posts, day, max_age_ms)
    affinity = top_affinity(read_affinity(lake_dir, day), scfg)
    read_s = time.perf_counter() - started

    engaged, hidden = recent_engaged(eng, live, day, scfg)
    compute_s = time.perf_counter() - started - read_s

    cutoff = day_end_ms(day) - scfg.engaged_ms
    users = np.union1d(engaged[c.VIEWER_ID].to_numpy(), hidden[c.VIEWER_ID].to_numpy())
    e_viewers = engaged[c.VIEWER_ID].to_numpy()
    e_members = post_members(engaged[c.POST_ID], engaged[c.AUTHOR_ID])
    e_scores = engaged[TS_MS].to_numpy()
    h_viewers = hidden[c.VIEWER_ID].to_numpy()
    h_members = post_members(hidden[c.POST_ID], hidden[c.AUTHOR_ID])
    # Row ranges of each user in both frames (both sorted by viewer).
    e_lo, e_hi = np.searchsorted(e_viewers, users, "left"), np.searchsorted(e_viewers, users, "right")
    h_lo, h_hi = np.searchsorted(h_viewers, users, "left"), np.searchsorted(h_viewers, users, "right")
    with BatchedPipeline(client) as cmd:
        merge = Script.register(client, _MERGE_ENGAGED)
        # Sets are capped at engaged_cap (<= a few hundred) members: well within Lua's unpack limit.
        for u, a, b, x, y in zip(users.tolist(), e_lo.tolist(), e_hi.tolist(), h_lo.tolist(), h_hi.tolist(),
                                 strict=True):
            args = [cutoff, scfg.engaged_cap, scfg.engaged_ttl_s, y - x, *h_members[x:y],
                    *zadd_args(e_members[a:b], e_scores[a:b])]
            cmd.script(merge, keys.engaged(u), args)
        authors = [b"%d" % a for a in affinity[c.AUTHOR_ID].tolist()]
        scores = affinity["score"].to_numpy()
        n_affinity = 0
        for viewer, s, e in grouped(affinity[c.VIEWER_ID].to_numpy()):
            flat = zadd_args(authors[s:e], scores[s:e])
            cmd.replace_zset(keys.top_affinity(viewer), flat, scfg.affinity_ttl_s)
            n_affinity += 1
    return {
        "day": day,
        "engagements_read": int(len(eng)),
        "users_with_engaged": int(engaged[c.VIEWER_ID].nunique()),
        "engaged_entries": int(len(engaged)),
        "hidden_pairs": int(len(hidden)),
        "viewers_with_affinity": n_affinity,
        "affinity_entries": int(len(affinity)),
        "redis_commands": cmd.commands,
        "read_s": round(read_s, 3),
        "compute_s": round(compute_s, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
