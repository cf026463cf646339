"""The Explore builders' pure frame computations, unit-tested on hand-made frames.

Inputs are explore.lake_reads frames. Point in time: everything "as of the end of day D" uses rows
landed on or before D (`dt`) and dated before the end of D, like the feature snapshots.

Score of a trending post (`trending_scores`):
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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from candidate_gen.explore.configs import PopularConfig, TrendingConfig
from candidate_gen.explore.lake_reads import CREATED_MS, DELETED_MS, TS_MS
from data import columns as c
from data.days import DAY_MS, HOUR_MS, day_end_ms
from features.streaming.spec import clean_tag

WEIGHT = "weight"
SCORE = "score"
EVENTS = "events"
TAG = "tag"


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
    deleted = known.loc[known[DELETED_MS] < end, c.POST_ID]
    created = known[known[DELETED_MS].isna() & (known[CREATED_MS] < end)]
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
    clean = [clean_tag(tag) for tag in uniques.astype(str)]
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
