"""Which accounts are viewers worth a Home feed: those who follow someone, from the lake alone.

A graph-only export (no impressions) has no "active viewer" to pick; every account with an active
follow edge has a Home feed to read. Edges follow the features' definition
(`features.jobs.inputs.follow_edges`, in Spark there): the latest follow/unfollow of a pair is a
follow and, for a private followee, an approve came at or after it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from candidate_gen.lake_reader import read_days
from data import columns as c
from data.days import day_end

SAMPLE_SEED = 7


def _as_of(frame: pd.DataFrame, column: str, day: str) -> pd.DataFrame:
    """Rows landed up to `day` and dated before its end (the feature snapshots' cut)."""
    return frame[pd.to_datetime(frame[column], utc=True) < day_end(day)]


def follow_edges(lake_dir: Path, day: str) -> pd.DataFrame:
    """Active follow edges at the end of `day`: follower_id, followee_id (int64), sorted."""
    cols = [c.FOLLOWER_ID, c.FOLLOWEE_ID, c.ACTION, c.TS]
    events = _as_of(read_days(Path(lake_dir), "follows", None, day, cols), c.TS, day)
    empty = pd.DataFrame({c.FOLLOWER_ID: pd.Series(dtype="int64"), c.FOLLOWEE_ID: pd.Series(dtype="int64")})
    if events.empty:
        return empty
    pair = [c.FOLLOWER_ID, c.FOLLOWEE_ID]
    events = events.assign(_ts=pd.to_datetime(events[c.TS], utc=True))
    toggles = events[events[c.ACTION].isin(["follow", "unfollow"])].sort_values([*pair, "_ts"], kind="stable")
    latest = toggles.drop_duplicates(pair, keep="last")
    latest = latest[latest[c.ACTION] == "follow"][[*pair, "_ts"]].rename(columns={"_ts": "since"})
    approved = events[events[c.ACTION] == "approve"].groupby(pair, as_index=False)["_ts"].max()
    users = _as_of(read_days(Path(lake_dir), "users", None, day, [c.USER_ID, c.UPDATED_AT, c.IS_PRIVATE]),
                   c.UPDATED_AT, day)
    users = users.assign(_ts=pd.to_datetime(users[c.UPDATED_AT], utc=True)).sort_values([c.USER_ID, "_ts"])
    latest_user = users.drop_duplicates(c.USER_ID, keep="last")
    private = set(latest_user.loc[latest_user[c.IS_PRIVATE].fillna(False).astype(bool), c.USER_ID].tolist())
    edges = latest.merge(approved.rename(columns={"_ts": "approved_at"}), on=pair, how="left")
    needs = edges[c.FOLLOWEE_ID].isin(private)
    active = edges[~needs | (edges["approved_at"] >= edges["since"])]
    if active.empty:
        return empty
    return active[pair].astype("int64").sort_values(pair).reset_index(drop=True)


def viewers_with_followees(lake_dir: Path, day: str, n: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Up to `n` distinct accounts following someone at the end of `day`, sampled with `seed`
    (the same lake and day give the same sample), in ascending order; empty when nobody follows."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    followers = np.unique(follow_edges(lake_dir, day)[c.FOLLOWER_ID].to_numpy(np.int64))
    if len(followers) <= n:
        return followers
    return np.sort(np.random.default_rng(seed).choice(followers, size=n, replace=False))
