"""Integrity labels: a rule set over events and account signals labels posts and accounts; the
ranking service's integrity stage turns each label into an outcome (allow, interstitial, downrank,
drop), stricter out of network (docs/candidates.md "Integrity").

The rules (candidate_gen/config.toml `[integrity.rules]`), over the `window_days` up to a day:
- a post is **borderline** when `borderline_reporters` distinct viewers reported it, or when its
  hides + reports per impression reach `borderline_negative_rate` over at least `min_impressions`
  (the rate rule needs the impressions log: a team's export without one runs the reporters rule);
- a post is **sensitive** when tagged with one of `sensitive_hashtags`;
- a post takes each label of its `post_labels` rows (a moderation classifier's, or a human
  reviewer's without a score) scored `min_label_score` or more (an export without the log: skipped);
- an account is **spam** when `spam_borderline_posts` of its posts are borderline, or when it is
  younger than `spam_new_account_days` and posted `spam_posts_per_day` or more a day since it
  joined (needs the users log).
An account's labels apply to each of its posts (the reader merges them).

State: two hashes in one slot (`{integrity}`), post id / account id -> the labels, comma-joined,
replaced whole by each daily build (written under a temporary key and renamed: a reader sees the
old set or the new, never half of one). Written by the daily `candidates/integrity` asset
(`build_labels`), and between builds by the fan-out consumer for the reporters rule
(`record_reports`: a post's second reporter labels it within a poll); read on the filter chain's
round trip (candidate_gen.filters.integrity_labels).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import redis

from candidate_gen.config import IntegrityConfig, IntegrityRules
from candidate_gen.explore.lake_reads import CREATED_MS, lookback_first_day, read_posts
from candidate_gen.fatigue import PushAway
from candidate_gen.keys import Keys
from candidate_gen.lake_reader import read_days, to_ms
from data import columns as c
from data import lake
from data.contracts import POST_LABELS
from data.days import DAY_MS, DAY_S, day_end_ms
from features.optional_logs import absent

NEGATIVE_TYPES = ("hide", "report")
WRITE_BATCH = 10_000


@dataclass
class Labels:
    posts: dict[int, set[str]] = field(default_factory=dict)
    accounts: dict[int, set[str]] = field(default_factory=dict)
    rules_run: list[str] = field(default_factory=list)  # which rules had their inputs

    def add(self, table: dict[int, set[str]], ids, label: str) -> None:
        for i in ids:
            table.setdefault(int(i), set()).add(label)

    def counts(self) -> dict[str, int]:
        return dict(Counter(x for table in (self.posts, self.accounts) for labels in table.values() for x in labels))


def label(negatives: pd.DataFrame, impressions: pd.Series | None, posts: pd.DataFrame,
          joined_ms: pd.Series | None, as_of_ms: int, rules: IntegrityRules,
          classified: pd.DataFrame | None = None) -> Labels:
    """The labels as of `as_of_ms`. `negatives`: viewer_id, post_id, author_id, type (hide, report)
    of the window; `impressions`: impressions per post of the window (None: no impressions log);
    `posts`: post_id, author_id, created_ms, hashtags of the window; `joined_ms`: account -> when
    it was created (None: no users log); `classified`: post_id, label, score of the window's
    post_labels rows (None: no post_labels log). A classifier's borderline label counts towards its
    author's `spam_borderline_posts` as a rule's does."""
    out = Labels()
    reports = negatives[negatives[c.TYPE] == "report"]
    reporters = reports.drop_duplicates([c.VIEWER_ID, c.POST_ID]).groupby(c.POST_ID).size()
    out.add(out.posts, reporters.index[reporters >= rules.borderline_reporters], "borderline")
    out.rules_run.append("borderline_reporters")
    if impressions is not None:
        negative = negatives.groupby(c.POST_ID).size()
        seen = impressions.reindex(negative.index).fillna(0)
        rate = negative / seen.where(seen > 0)
        hit = (seen >= rules.min_impressions) & (rate >= rules.borderline_negative_rate)
        out.add(out.posts, negative.index[hit.to_numpy()], "borderline")
        out.rules_run.append("borderline_negative_rate")
    if rules.sensitive_hashtags:
        wanted = {t.lower().lstrip("#") for t in rules.sensitive_hashtags}
        tagged = posts[c.HASHTAGS].map(lambda tags: tags is not None and any(
            str(t).lower().lstrip("#") in wanted for t in tags))
        out.add(out.posts, posts.loc[tagged.astype(bool), c.POST_ID], "sensitive")
        out.rules_run.append("sensitive_hashtags")
    if classified is not None:
        score = pd.to_numeric(classified[c.SCORE], errors="coerce")
        taken = classified[score.isna() | (score >= rules.min_label_score)]
        for name, rows in taken.groupby(c.LABEL)[c.POST_ID]:
            out.add(out.posts, rows.unique(), str(name))
        out.rules_run.append("post_labels")
    author_of = posts.drop_duplicates(c.POST_ID).set_index(c.POST_ID)[c.AUTHOR_ID]
    borderline = [p for p, labels in out.posts.items() if "borderline" in labels]
    # a post of the window's negatives may be older than the window's posts: its author from the events
    authors = author_of.reindex(borderline).fillna(
        negatives.drop_duplicates(c.POST_ID).set_index(c.POST_ID)[c.AUTHOR_ID].reindex(borderline))
    per_author = authors.dropna().astype("int64").value_counts()
    out.add(out.accounts, per_author.index[per_author >= rules.spam_borderline_posts], "spam")
    out.rules_run.append("spam_borderline_posts")
    if joined_ms is not None and len(posts):
        young = joined_ms[joined_ms >= as_of_ms - rules.spam_new_account_days * DAY_MS]
        mine = posts[posts[c.AUTHOR_ID].isin(young.index)]
        counts = mine.drop_duplicates(c.POST_ID).groupby(c.AUTHOR_ID).size()
        age_days = np.maximum((as_of_ms - young.reindex(counts.index)) / DAY_MS, 1.0)  # a day at least
        out.add(out.accounts, counts.index[(counts / age_days) >= rules.spam_posts_per_day], "spam")
        out.rules_run.append("spam_new_account")
    return out


def record_reports(client: redis.Redis, keys: Keys, reports: Iterable[PushAway], rules: IntegrityRules) -> int:
    """Reports from the stream (the fan-out consumer, within a poll of the event): each post's
    reporters are kept (a set per post, for `window_days`), and a post that reaches
    `borderline_reporters` distinct ones is labelled borderline at once, its other labels kept. The
    daily build labels it again from the lake; a report landing between that build's read and its
    rename waits for the next one. Returns how many posts were labelled."""
    by_post: dict[int, set[int]] = {}
    for r in reports:
        if r.type == "report" and r.viewer != r.author:
            by_post.setdefault(r.post, set()).add(r.viewer)
    if not by_post:
        return 0
    pipe = client.pipeline(transaction=False)
    for post, viewers in by_post.items():
        key = keys.integrity_reporters(post)
        pipe.sadd(key, *viewers)
        pipe.expire(key, int(rules.window_days * DAY_S))
        pipe.scard(key)
    counts = pipe.execute()[2::3]
    reached = [post for post, n in zip(by_post, counts, strict=True) if n >= rules.borderline_reporters]
    if not reached:
        return 0
    current = client.hmget(keys.integrity_posts, reached)
    merged = {post: ",".join(sorted({"borderline", *(raw.decode().split(",") if raw else ())}))
              for post, raw in zip(reached, current, strict=True)}
    client.hset(keys.integrity_posts, mapping=merged)
    return len(merged)


def write_labels(client: redis.Redis, keys: Keys, labels: Labels) -> None:
    """Replace both hashes whole: each written under its temporary key, then renamed over it."""
    for key, table in ((keys.integrity_posts, labels.posts), (keys.integrity_accounts, labels.accounts)):
        tmp = key + ":next"
        client.delete(tmp)
        items = [(i, ",".join(sorted(v))) for i, v in table.items()]
        for at in range(0, len(items), WRITE_BATCH):
            client.hset(tmp, mapping=dict(items[at:at + WRITE_BATCH]))
        if items:
            client.rename(tmp, key)
        else:
            client.delete(key)


def read_labels(client: redis.Redis, keys: Keys) -> Labels:
    """Both hashes back (tools, tests, the bench)."""
    def table(key: str) -> dict[int, set[str]]:
        return {int(k): set(v.decode().split(",")) for k, v in client.hgetall(key).items()}

    return Labels(table(keys.integrity_posts), table(keys.integrity_accounts))


def _impressions_per_post(lake_dir: Path, days: list[str], first_ms: int, last_ms: int) -> pd.Series | None:
    """Impressions per post within [first_ms, last_ms] (None: the export has no impressions log),
    a day at a time so only one day's ids are held."""
    if absent(lake_dir, "impressions"):
        return None
    within = lake.ts_within(first_ms, last_ms)
    counts = pd.Series(dtype="int64")
    for d in days:
        day = lake.read_partitions(lake_dir, "impressions", [d], [c.POST_ID], within)[c.POST_ID].value_counts()
        counts = counts.add(day, fill_value=0)
    return counts


def read_post_labels(lake_dir: Path, first: str, day: str, first_ms: int, last_ms: int) -> pd.DataFrame | None:
    """post_id, label, score of the post_labels rows labelled within [first_ms, last_ms] (None: the
    export has no post_labels log)."""
    if absent(lake_dir, POST_LABELS.name):
        return None
    days = [d for d in lake.partition_days(lake_dir, POST_LABELS.name) if first <= d <= day]
    within = lake.ts_within(first_ms, last_ms)
    return lake.read_partitions(lake_dir, POST_LABELS.name, days, [c.POST_ID, c.LABEL, c.SCORE], within)


def build_labels(lake_dir: Path, day: str, client: redis.Redis, cfg: IntegrityConfig, keys: Keys) -> dict:
    """The labels as of the end of `day`, from the lake, into Redis (the daily asset)."""
    labels, negatives = labels_from_lake(lake_dir, day, cfg.rules)
    write_labels(client, keys, labels)
    return {"day": day, "negatives": negatives, "posts_labelled": len(labels.posts),
            "accounts_labelled": len(labels.accounts), "labels": labels.counts(), "rules_run": labels.rules_run}


def labels_from_lake(lake_dir: Path, day: str, rules: IntegrityRules,
                     post_labels: bool = True) -> tuple[Labels, int]:
    """The labels as of the end of `day` and how many hides and reports they were judged from.
    `post_labels=False`: the rules alone, the post_labels log left unread (integrity_eval)."""
    end = day_end_ms(day)
    start = end - rules.window_ms
    first = lookback_first_day(day, rules.window_ms)
    days = [d for d in lake.partition_days(lake_dir, "engagements") if first <= d <= day]
    events = lake.read_partitions(lake_dir, "engagements", days, [c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE, c.TS],
                                  pads.field(c.TYPE).isin(list(NEGATIVE_TYPES)))
    if len(events):
        ts = to_ms(events[c.TS])
        events = events[(ts >= start) & (ts <= end)]
    impression_days = [d for d in lake.partition_days(lake_dir, "impressions") if first <= d <= day]
    impressions = _impressions_per_post(lake_dir, impression_days, start, end)
    posts = read_posts(lake_dir, day, first)
    posts = posts[(posts[CREATED_MS] >= start) & (posts[CREATED_MS] <= end) & posts[c.DT].notna()]
    joined = None
    if lake.partition_days(lake_dir, "users"):
        users = read_days(lake_dir, "users", None, day, [c.USER_ID, c.CREATED_AT])
        if len(users):
            joined = pd.Series(to_ms(users[c.CREATED_AT]).to_numpy(), index=users[c.USER_ID].astype("int64"))
            joined = joined.groupby(level=0).min()
    classified = read_post_labels(lake_dir, first, day, start, end) if post_labels else None
    return label(events, impressions, posts, joined, end, rules, classified), len(events)
