"""Trending, per-hashtag trending, viewer hashtag interests and popular posts, as of the end of a day.

Score of a post (`trending_scores`):
- every engagement gets a type weight (`weights`; hide and report are negative, a dwell counts only
  when it lasted at least LONG_DWELL_MS); a viewer counts once per post and type (their latest
  event), so re-views and repeated taps cannot pump a post, and authors' own engagements are ignored;
- velocity of a window = weighted count in the last `w` hours / `w`, for `windows_hours` (1, 6, 24);
- mix = the `window_weights` average of those velocities (0.5, 0.3, 0.2): the short window lets a
  post that is taking off right now climb within the hour, the longer ones keep a post that has been
  steadily engaged all day above a burst of three likes;
- smoothed for tiny counts: mix * n / (n + `smoothing_events`), n = distinct positive events in the
  longest window, so one share (weight 4) in the last hour does not outrank a post with a hundred
  likes. Posts with fewer than `min_events` such events, or a score <= 0, are not trending.
Only posts created within `feed.max_age_days` of the end of the day and not deleted by then count.

Point in time: everything "as of the end of day D" uses lake rows landed on or before D (`dt`) and
dated before the end of D, like the feature snapshots.

Redis: the global and per-tag sets, `popular` and each viewer's tag set are each replaced in one
atomic step (a Lua script: a reader sees the old set or the new one, never half of one) and expire
after `ttl_hours`, so trends and viewers that are no longer rebuilt disappear.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis
from pandas.api.types import union_categoricals

from candidate_gen.config import DAY_MS, CandidateConfig
from candidate_gen.lake_reader import read_days, to_ms
from candidate_gen.records import member
from candidate_gen.scripts import LUA_DIR
from data import columns as c
from data import lake
from features.optional_logs import absent
from features.tables import DECAY_WEIGHTS

HOUR_MS = 3_600_000
BATCH_COMMANDS = 5_000  # commands per pipeline execute
TS_MS = "ts_ms"
CREATED_MS = "created_ms"
WEIGHT = "weight"
SCORE = "score"
EVENTS = "events"
TAG = "tag"


def config_from_section(cls: type, section: dict[str, Any]) -> Any:
    """A config dataclass from a TOML table: known keys only (lists become tuples)."""
    names = {f.name for f in fields(cls)}
    unknown = set(section) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
    return cls(**values)


@dataclass(frozen=True)
class TrendingConfig:
    windows_hours: tuple[float, ...] = (1.0, 6.0, 24.0)
    window_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    smoothing_events: float = 5.0
    min_events: int = 3
    weights: dict[str, float] = field(default_factory=lambda: dict(DECAY_WEIGHTS))
    top_k: int = 500  # global trending set size
    tag_top_k: int = 200  # per-hashtag set size
    min_tag_posts: int = 10  # a tag gets a set when at least this many of its posts trend
    ttl_hours: float = 48.0
    viewer_tags_days: float = 28.0
    viewer_tags_n: int = 10  # tags kept per viewer
    # Read side (TrendingSource): the viewer's top tags it reads, posts per tag, and how much the
    # viewer's strongest tag multiplies a post's velocity (1 + tag_boost * weight / top weight).
    source_tags: int = 5
    source_per_tag: int = 100
    tag_boost: float = 1.0

    def __post_init__(self) -> None:
        if len(self.windows_hours) != len(self.window_weights) or not self.windows_hours:
            raise ValueError("windows_hours and window_weights must be non-empty and the same length")

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> TrendingConfig:
        section = dict(section)
        if "weights" in section:  # a partial table overrides some types, keeps the others
            section["weights"] = {**DECAY_WEIGHTS, **section["weights"]}
        return config_from_section(cls, section)

    @property
    def ttl_s(self) -> int:
        return int(self.ttl_hours * 3600)

    @property
    def longest_ms(self) -> int:
        return int(max(self.windows_hours) * HOUR_MS)


@dataclass(frozen=True)
class PopularConfig:
    window_hours: float = 48.0
    top_k: int = 1000
    ttl_hours: float = 48.0
    # PopularSource keeps the (global) set in process this long, in request time; 0: always read.
    cache_ms: int = 30_000

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> PopularConfig:
        return config_from_section(cls, section)

    @property
    def ttl_s(self) -> int:
        return int(self.ttl_hours * 3600)


# --- days and lake reads -------------------------------------------------------------------------


def day_end_ms(day: str) -> int:
    """The end of `day` (UTC) in epoch ms: the "as of" time of a build for that day."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    return int((start + timedelta(days=1)).timestamp() * 1000)


def days_before(day: str, n: int) -> str:
    return (date.fromisoformat(day) - timedelta(days=n)).isoformat()


def lookback_first_day(day: str, span_ms: int) -> str:
    """First landing day that can hold events dated within `span_ms` of the end of `day` (one more
    day for events that land a little before their own date, clock skew)."""
    return days_before(day, math.ceil(span_ms / DAY_MS) + 1)


def require_day(lake_dir: Path, day: str, tables: tuple[str, ...] = ("engagements", "posts")) -> None:
    """Fail (rather than publish empty trends) when the day's lake partitions are not there; a log
    the export does not have at all (no engagements in a graph-only export) is empty, not missing."""
    missing = [t for t in tables if day not in lake.partition_days(lake_dir, t) and not absent(lake_dir, t)]
    if missing:
        # Imported here: features.jobs loads pyspark, which the read path must not pay for.
        from features.jobs.inputs import MissingInputError

        paths = ", ".join(str(lake.partition_dir(lake_dir, t, day)) for t in missing)
        raise MissingInputError(f"Explore build {day} needs lake partitions that are missing: {paths}")


def read_engagements(lake_dir: Path, first: str, day: str) -> pd.DataFrame:
    """viewer_id, post_id, author_id, type (category), value, ts_ms, dt (category) of the
    engagements landed on days [first, day].

    Read a day at a time so only one day's strings are ever held as Python objects.
    """
    cols = [c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE, c.VALUE, c.TS]
    frames = []
    for d in lake.partition_days(lake_dir, "engagements"):
        if first <= d <= day:
            part = read_days(lake_dir, "engagements", d, d, cols)
            part[TS_MS] = to_ms(part.pop(c.TS))
            part[c.TYPE] = part[c.TYPE].astype("category")
            part[c.DT] = part[c.DT].astype("category")
            frames.append(part)
    if not frames:
        empty = {k: pd.Series(dtype="int64") for k in (c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID)}
        rest = {c.TYPE: pd.Series(dtype="category"), c.VALUE: pd.Series(dtype="float64"),
                TS_MS: pd.Series(dtype="int64"), c.DT: pd.Series(dtype="category")}
        return pd.DataFrame({**empty, **rest})
    categorical = {k: union_categoricals([f[k] for f in frames]) for k in (c.TYPE, c.DT)}
    out = pd.concat([f.drop(columns=list(categorical)) for f in frames], ignore_index=True)
    for k, values in categorical.items():
        out[k] = values
    return out


def read_posts(lake_dir: Path, day: str, first: str | None = None) -> pd.DataFrame:
    """post_id, author_id, created_ms, hashtags, deleted_ms (NaN on creation rows), dt."""
    cols = [c.POST_ID, c.AUTHOR_ID, c.CREATED_AT, c.HASHTAGS, c.DELETED_AT]
    frame = read_days(lake_dir, "posts", first, day, cols)
    if frame.empty:
        return pd.DataFrame({c.POST_ID: pd.Series(dtype="int64"), c.AUTHOR_ID: pd.Series(dtype="int64"),
                             CREATED_MS: pd.Series(dtype="int64"), c.HASHTAGS: pd.Series(dtype="object"),
                             "deleted_ms": pd.Series(dtype="float64"), c.DT: pd.Series(dtype="object")})
    return pd.DataFrame({
        c.POST_ID: frame[c.POST_ID].astype("int64"),
        c.AUTHOR_ID: frame[c.AUTHOR_ID].astype("int64"),
        CREATED_MS: to_ms(frame[c.CREATED_AT]),
        c.HASHTAGS: frame[c.HASHTAGS],
        "deleted_ms": _nullable_ms(frame[c.DELETED_AT]),
        c.DT: frame[c.DT],
    })


def _nullable_ms(series: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(series, utc=True)
    out = pd.Series(np.nan, index=series.index)
    present = stamps.notna()
    if present.any():
        out[present] = to_ms(stamps[present]).astype("float64")
    return out


# --- pure frame computations (unit-tested on hand-made frames) -----------------------------------


def landed_by(dt: pd.Series, day: str) -> np.ndarray:
    """Mask of rows whose landing day is on or before `day` (dt as strings or categories)."""
    if isinstance(dt.dtype, pd.CategoricalDtype):
        known = np.append(np.asarray(dt.cat.categories.astype(str)) <= day, False)
        return known[dt.cat.codes.to_numpy()]
    return (dt.astype(str) <= day).to_numpy()


def as_of(frame: pd.DataFrame, day: str, ts_column: str = TS_MS) -> pd.DataFrame:
    """Rows known at the end of `day`: landed on or before it and dated before its end."""
    return frame[landed_by(frame[c.DT], day) & (frame[ts_column] < day_end_ms(day)).to_numpy()]


def event_weights(frame: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    """Each engagement's weight; a dwell shorter than LONG_DWELL_MS weighs nothing."""
    kinds = frame[c.TYPE].astype("category")
    table = np.array([float(weights.get(k, 0.0)) for k in kinds.cat.categories] + [0.0])
    codes = kinds.cat.codes.to_numpy()  # -1 (missing type) picks the trailing 0
    out = table[codes]
    short_dwell = (kinds == "dwell").to_numpy() & ~(frame[c.VALUE].fillna(0).to_numpy() >= c.LONG_DWELL_MS)
    out[short_dwell] = 0.0
    return out


def weighted_events(eng: pd.DataFrame, day: str, span_ms: int, weights: dict[str, float]) -> pd.DataFrame:
    """Engagements of the `span_ms` before the end of `day` (point in time), one per viewer, post and
    type (the latest), authors' own dropped, with `weight`; zero-weight rows dropped."""
    end = day_end_ms(day)
    rows = as_of(eng, day)
    rows = rows[(rows[TS_MS] >= end - span_ms) & (rows[c.VIEWER_ID] != rows[c.AUTHOR_ID])]
    rows = rows.assign(**{WEIGHT: event_weights(rows, weights)})
    # Weight first: a short dwell after a long one must not replace it.
    rows = rows[rows[WEIGHT] != 0].sort_values(TS_MS, kind="stable")
    return rows.drop_duplicates([c.VIEWER_ID, c.POST_ID, c.TYPE], keep="last")


def live_posts(posts: pd.DataFrame, day: str, max_age_ms: int | None) -> pd.DataFrame:
    """Posts created before the end of `day` (and within `max_age_ms` of it) and not deleted by
    then, from read_posts rows: one row per post (post_id, author_id, created_ms, hashtags)."""
    end = day_end_ms(day)
    known = posts[landed_by(posts[c.DT], day)]
    deleted = known.loc[known["deleted_ms"] < end, c.POST_ID]
    created = known[known["deleted_ms"].isna() & (known[CREATED_MS] < end)]
    if max_age_ms is not None:
        created = created[created[CREATED_MS] >= end - max_age_ms]
    created = created[~created[c.POST_ID].isin(deleted)].drop_duplicates(c.POST_ID)
    return created[[c.POST_ID, c.AUTHOR_ID, CREATED_MS, c.HASHTAGS]].reset_index(drop=True)


def trending_scores(events: pd.DataFrame, live: pd.DataFrame, day: str, tcfg: TrendingConfig) -> pd.DataFrame:
    """post_id, author_id, score, events of the trending posts, best first (see module doc).

    `events`: weighted_events of at least the longest window.
    """
    end = day_end_ms(day)
    rows = events[(events[TS_MS] >= end - tcfg.longest_ms) & events[c.POST_ID].isin(live[c.POST_ID])]
    age = end - rows[TS_MS].to_numpy()
    w = rows[WEIGHT].to_numpy()
    total = sum(tcfg.window_weights)
    mix = np.zeros(len(rows))
    for hours, alpha in zip(tcfg.windows_hours, tcfg.window_weights, strict=True):
        # Summing per-event contributions is the same as summing per window then mixing.
        mix += np.where(age <= hours * HOUR_MS, w, 0.0) * (alpha / total / hours)
    parts = pd.DataFrame({c.POST_ID: rows[c.POST_ID].to_numpy(), SCORE: mix, EVENTS: (w > 0).astype("int64")})
    per_post = parts.groupby(c.POST_ID, sort=False).sum()
    n = per_post[EVENTS].to_numpy()
    per_post[SCORE] = per_post[SCORE].to_numpy() * n / (n + tcfg.smoothing_events)
    per_post = per_post[(n >= tcfg.min_events) & (per_post[SCORE] > 0)].reset_index()
    out = per_post.merge(live[[c.POST_ID, c.AUTHOR_ID]], on=c.POST_ID)
    return _ranked(out)[[c.POST_ID, c.AUTHOR_ID, SCORE, EVENTS]]


def popular_scores(events: pd.DataFrame, live: pd.DataFrame, day: str, pcfg: PopularConfig) -> pd.DataFrame:
    """post_id, author_id, score (weighted engagements of the last `window_hours`), top_k, best first.

    `events`: weighted_events of at least `window_hours`.
    """
    since = day_end_ms(day) - pcfg.window_hours * HOUR_MS
    rows = events[(events[TS_MS] >= since) & events[c.POST_ID].isin(live[c.POST_ID])]
    per_post = rows.groupby(c.POST_ID, sort=False)[WEIGHT].sum().rename(SCORE).reset_index()
    per_post = per_post[per_post[SCORE] > 0].merge(live[[c.POST_ID, c.AUTHOR_ID]], on=c.POST_ID)
    return _ranked(per_post).head(pcfg.top_k)[[c.POST_ID, c.AUTHOR_ID, SCORE]]


def post_tags(posts: pd.DataFrame) -> pd.DataFrame:
    """post_id, tag (lowercased, without '#', one row per distinct tag of a post)."""
    exploded = posts[[c.POST_ID, c.HASHTAGS]].explode(c.HASHTAGS)
    exploded = exploded[exploded[c.HASHTAGS].notna()]
    # Clean the few distinct spellings, not every occurrence.
    codes, uniques = pd.factorize(exploded[c.HASHTAGS])
    clean = pd.Index(uniques.astype(str)).str.strip().str.lstrip("#").str.lower()
    out = pd.DataFrame({c.POST_ID: exploded[c.POST_ID].to_numpy(dtype="int64"),
                        TAG: np.asarray(clean, dtype=object)[codes]})
    return out[out[TAG] != ""].drop_duplicates().reset_index(drop=True)


def tag_trending(scores: pd.DataFrame, tags: pd.DataFrame, tcfg: TrendingConfig) -> pd.DataFrame:
    """tag, post_id, author_id, score: each tag's top `tag_top_k` trending posts, for the tags with
    at least `min_tag_posts` trending posts."""
    rows = scores.merge(tags, on=c.POST_ID)
    volume = rows.groupby(TAG)[c.POST_ID].transform("size")
    rows = rows[volume >= tcfg.min_tag_posts]
    rows = top_per_group(rows, TAG, [(SCORE, False), (c.POST_ID, False)], tcfg.tag_top_k)
    return rows[[TAG, c.POST_ID, c.AUTHOR_ID, SCORE]]


def viewer_tag_weights(
    events: pd.DataFrame, tags: pd.DataFrame, day: str, tcfg: TrendingConfig
) -> pd.DataFrame:
    """viewer_id, tag, weight: each viewer's top `viewer_tags_n` tags (weight > 0) by their own
    weighted engagements of the last `viewer_tags_days` (an engagement's weight goes to each of the
    post's tags), sorted by viewer then weight.

    `events`: weighted_events of at least `viewer_tags_days`; `tags`: post_tags of the engaged posts.
    """
    since = day_end_ms(day) - tcfg.viewer_tags_days * DAY_MS
    rows = events.loc[events[TS_MS] >= since, [c.VIEWER_ID, c.POST_ID, WEIGHT]]
    codes, names = pd.factorize(tags[TAG])
    coded = pd.DataFrame({c.POST_ID: tags[c.POST_ID].to_numpy(), "code": codes.astype("int64")})
    joined = rows.merge(coded, on=c.POST_ID)
    # One int64 group key (viewer, tag) groups several times faster than two columns.
    n_tags = max(len(names), 1)
    pair = joined[c.VIEWER_ID].to_numpy() * n_tags + joined["code"].to_numpy()
    per_tag = pd.Series(joined[WEIGHT].to_numpy()).groupby(pair, sort=False).sum()
    per_tag = per_tag[per_tag > 0]
    out = pd.DataFrame({c.VIEWER_ID: per_tag.index.to_numpy() // n_tags,
                        "code": per_tag.index.to_numpy() % n_tags, WEIGHT: per_tag.to_numpy()})
    out = top_per_group(out, c.VIEWER_ID, [(WEIGHT, False), ("code", True)], tcfg.viewer_tags_n)
    return pd.DataFrame({
        c.VIEWER_ID: out[c.VIEWER_ID].to_numpy(),
        TAG: np.asarray(names, dtype=object)[out["code"].to_numpy()],
        WEIGHT: out[WEIGHT].to_numpy(),
    })


def top_per_group(frame: pd.DataFrame, group: str, by: list[tuple[str, bool]], n: int) -> pd.DataFrame:
    """The first `n` rows of each `group` in the order `by` ((column, ascending) pairs), the result
    sorted by group then that order.

    Successive stable numpy argsorts (last key first) and a rank from run starts: several times
    faster than a multi-column sort_values plus groupby().cumcount() on millions of rows.
    """
    order = np.arange(len(frame))
    for column, ascending in reversed([(group, True), *by]):
        values = frame[column].to_numpy()[order]
        if not ascending:
            values = -values
        order = order[np.argsort(values, kind="stable")]
    keys = frame[group].to_numpy()[order]
    position = np.arange(len(keys))
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    rank = position - np.maximum.accumulate(np.where(starts, position, 0))
    return frame.iloc[order[rank < n]].reset_index(drop=True)


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values([SCORE, c.POST_ID], ascending=[False, False]).reset_index(drop=True)


# --- Redis writes ----------------------------------------------------------------------------------


def post_members(post_ids: Iterable[int], author_ids: Iterable[int]) -> list[bytes]:
    posts, authors = np.asarray(post_ids).tolist(), np.asarray(author_ids).tolist()
    return [member(p, a) for p, a in zip(posts, authors, strict=True)]


def zadd_args(members: list[bytes], scores: Iterable[float]) -> list:
    """Flat ZADD arguments: score, member, score, member, ..."""
    flat: list = [None] * (2 * len(members))
    flat[0::2] = np.asarray(scores, dtype="float64").tolist()
    flat[1::2] = members
    return flat


def grouped(keys: np.ndarray) -> Iterator[tuple[Any, int, int]]:
    """(key, start, stop) of each run of equal values in a sorted array."""
    if len(keys) == 0:
        return
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(keys)]))
    yield from zip(keys[starts].tolist(), starts.tolist(), stops.tolist(), strict=True)


# Replace a sorted set in one step: DEL, ZADD (in chunks: Lua's unpack has a stack limit), EXPIRE.
# A script runs alone on the server, so a reader sees the old set or the new one, never part of one
# (the same guarantee as filling a temp key and RENAMing it, with one command instead of three).
# KEYS[1] the set; ARGV[1] TTL seconds; ARGV[2..] score, member pairs (none: the set is deleted).
_REPLACE_ZSET = (LUA_DIR / "replace_zset.lua").read_text()


class BatchedPipeline:
    """A non-transactional pipeline executed every `batch` commands (and on leaving the block)."""

    def __init__(self, client: redis.Redis, batch: int = BATCH_COMMANDS):
        self._client = client
        self._pipe = client.pipeline(transaction=False)
        self._replace_sha = self.load(_REPLACE_ZSET)
        self._batch = batch
        self._queued = 0
        self.commands = 0

    def load(self, script: str) -> str:
        """Load a Lua script on the server once; queue it with `script(sha, ...)`. (A server that
        restarts mid-build forgets it: the build then fails with NOSCRIPT and is simply re-run.)"""
        return self._client.script_load(script)

    def __call__(self, *args: Any) -> None:
        self._pipe.execute_command(*args)
        self._counted()

    def replace_zset(self, key: str, flat: list, ttl_s: int) -> None:
        """Atomically replace `key` by the set of `flat` ZADD arguments, expiring in `ttl_s`."""
        self.script(self._replace_sha, key, [ttl_s, *flat])

    def script(self, sha: str, key: str, args: list) -> None:
        """Queue a loaded script on one key (raw EVALSHA: redis-py's Script wrapper costs more per
        call than the command itself at a hundred thousand calls)."""
        self._pipe.execute_command("EVALSHA", sha, 1, key, *args)
        self._counted()

    def _counted(self) -> None:
        self._queued += 1
        self.commands += 1
        if self._queued >= self._batch:
            self.flush()

    def flush(self) -> None:
        if self._queued:
            self._pipe.execute()
            self._queued = 0

    def __enter__(self) -> BatchedPipeline:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._pipe.reset()


# --- the builder -----------------------------------------------------------------------------------


def build_trending(lake_dir: Path, day: str, client: redis.Redis, cfg: CandidateConfig) -> dict:
    """Trending (global and per tag), viewers' top tags and popular posts as of the end of `day`
    into Redis; returns stats for the Dagster metadata."""
    started = time.perf_counter()
    tcfg = TrendingConfig.from_section(cfg.section("trending"))
    pcfg = PopularConfig.from_section(cfg.section("popular"))
    keys = cfg.keys
    require_day(lake_dir, day)
    span = max(tcfg.longest_ms, int(pcfg.window_hours * HOUR_MS), int(tcfg.viewer_tags_days * DAY_MS))
    eng = read_engagements(lake_dir, lookback_first_day(day, span), day)
    # Posts engaged in the viewer-tag window may be older than max age: read back that far too
    # (bounded, so the build does not grow with the lake's whole history).
    posts = read_posts(lake_dir, day, first=lookback_first_day(day, span + cfg.feed.max_age_ms))
    live = live_posts(posts, day, cfg.feed.max_age_ms)
    read_s = time.perf_counter() - started

    events = weighted_events(eng, day, span, tcfg.weights)
    del eng
    scores = trending_scores(events, live, day, tcfg)
    tags = post_tags(posts[posts["deleted_ms"].isna()].drop_duplicates(c.POST_ID))
    live_tags = tags[tags[c.POST_ID].isin(live[c.POST_ID])]
    per_tag = tag_trending(scores, live_tags, tcfg)
    popular = popular_scores(events, live, day, pcfg)
    vtags = viewer_tag_weights(events, tags, day, tcfg)
    compute_s = time.perf_counter() - started - read_s

    top = scores.head(tcfg.top_k)
    with BatchedPipeline(client) as cmd:
        trending_flat = zadd_args(post_members(top[c.POST_ID], top[c.AUTHOR_ID]), top[SCORE])
        cmd.replace_zset(keys.trending, trending_flat, tcfg.ttl_s)
        popular_flat = zadd_args(post_members(popular[c.POST_ID], popular[c.AUTHOR_ID]), popular[SCORE])
        cmd.replace_zset(keys.popular, popular_flat, pcfg.ttl_s)
        tag_names = per_tag[TAG].to_numpy()
        members = post_members(per_tag[c.POST_ID], per_tag[c.AUTHOR_ID])
        tag_scores = per_tag[SCORE].to_numpy()
        built = set()
        for tag, s, e in grouped(tag_names):
            cmd.replace_zset(keys.trending_tag(tag), zadd_args(members[s:e], tag_scores[s:e]), tcfg.ttl_s)
            built.add(tag)
        # A tag of today's posts that no longer trends loses yesterday's set now, not at its TTL.
        for tag in sorted(set(live_tags[TAG]) - built):
            cmd("DEL", keys.trending_tag(tag))
        viewers = vtags[c.VIEWER_ID].to_numpy()
        tag_members = [t.encode() for t in vtags[TAG]]
        weights = vtags[WEIGHT].to_numpy()
        n_viewers = 0
        for viewer, s, e in grouped(viewers):
            cmd.replace_zset(keys.viewer_tags(viewer), zadd_args(tag_members[s:e], weights[s:e]), tcfg.ttl_s)
            n_viewers += 1
    return {
        "day": day,
        "engagements_used": int(len(events)),
        "live_posts": int(len(live)),
        "trending_posts": int(len(scores)),
        "trending_written": int(len(top)),
        "top_score": float(scores[SCORE].iloc[0]) if len(scores) else 0.0,
        "tags_written": len(built),
        "popular_written": int(len(popular)),
        "viewers_with_tags": n_viewers,
        "redis_commands": cmd.commands,
        "read_s": round(read_s, 3),
        "compute_s": round(compute_s, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
