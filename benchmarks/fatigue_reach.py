"""What feedback fatigue can at most prevent, read from a simulated world's history (its truth).

Fatigue lowers, for one viewer, what is like what that viewer already pushed away: the same author,
or posts sharing its hashtags. A hide or report can only be prevented by it when the viewer had
pushed such a thing away before. Over the world's impressions in time order, this takes the share
of the hides and reports (realised, and the truth's expected P(hide) + P(report)) that fell on

- an author the viewer had hidden or reported within the fatigue window (author fatigue's reach);
- a post sharing a hashtag with a post the viewer had pushed away ("posts like this");
- either of the two (all fatigue can act on);
- anything, from a viewer who had pushed anything away (their own negativity: lowering all of one
  viewer's candidates alike changes no ranking, so this is not fatigue's to take).

What is left is a first reaction, which only the value model's hide and report heads can foresee.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as pads

from candidate_gen.explore.lake_reads import read_posts
from candidate_gen.lake_reader import to_ms
from data import columns as c
from data import lake

KINDS = ("author", "hashtag", "author_or_hashtag", "any_push_away")


def fatigue_reach(truth_dir: Path, lake_dir: Path, window_ms: int) -> dict:
    """The shares, by kind, over the truth's impressions of the world's days (live plays aside)."""
    columns = [c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TS, "y_hide", "y_report", "p_hide", "p_report"]
    frame = pads.dataset(sorted((truth_dir / "impressions").glob("*.parquet"))).to_table(columns=columns)
    frame = frame.to_pandas().sort_values(c.TS, kind="stable")
    last_day = max(lake.partition_days(lake_dir, "posts"))
    posts = read_posts(lake_dir, last_day)
    tags_of = {p: frozenset(str(t).lstrip("#").lower() for t in tags) for p, tags in
               zip(posts[c.POST_ID].tolist(), posts[c.HASHTAGS].tolist(), strict=True) if tags is not None}
    ts = to_ms(frame[c.TS])
    negative = (frame["y_hide"] | frame["y_report"]).to_numpy()
    expected = (frame["p_hide"] + frame["p_report"]).to_numpy()

    author_at: dict[tuple[int, int], int] = {}  # (viewer, author) -> the last push-away's time
    tag_at: dict[tuple[int, str], int] = {}
    viewer_at: dict[int, int] = {}
    realised = dict.fromkeys(KINDS, 0)
    mass = dict.fromkeys(KINDS, 0.0)

    def recent(at: int | None, now: int) -> bool:
        return at is not None and now - at <= window_ms

    rows = zip(frame[c.VIEWER_ID].tolist(), frame[c.POST_ID].tolist(), frame[c.AUTHOR_ID].tolist(), ts.tolist(),
               negative.tolist(), expected.tolist(), strict=True)
    for viewer, post, author, now, neg, p in rows:
        tags = tags_of.get(post, frozenset())
        hit = {"author": recent(author_at.get((viewer, author)), now),
               "hashtag": any(recent(tag_at.get((viewer, t)), now) for t in tags),
               "any_push_away": recent(viewer_at.get(viewer), now)}
        hit["author_or_hashtag"] = hit["author"] or hit["hashtag"]
        for kind in KINDS:
            if hit[kind]:
                mass[kind] += p
                realised[kind] += neg
        if neg:
            author_at[(viewer, author)] = viewer_at[viewer] = now
            for t in tags:
                tag_at[(viewer, t)] = now
    total_mass, total = float(expected.sum()), int(negative.sum())
    return {
        "impressions": len(frame), "hides_and_reports": total, "window_days": window_ms / 86_400_000,
        "share_of_hides_and_reports": {k: round(realised[k] / max(total, 1), 4) for k in KINDS},
        "share_of_expected_hides_and_reports": {k: round(mass[k] / max(total_mass, 1e-12), 4) for k in KINDS},
    }
