"""A landing folder shaped like a team's own export, nothing like the simulator's: string ids, dates in
2019, click-only labels (plus neutral `view` events), Home only (no Explore logs), no blocks log,
fields the simulator always fills left out. Clicks follow a hidden per-pair affinity, so a ranker has
something real to learn from the relationship features.

`graph_only=True` writes accounts, follows and posts alone: no engagements, no impressions.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

FIRST_DAY = date(2019, 3, 4)


def _ts(day: date, seconds: float) -> str:
    t = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=float(seconds))
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _write(folder: Path, log: str, day: date, name: str, rows: list[dict]) -> None:
    path = folder / log / day.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_team_export(folder: Path, *, days: int = 6, users: int = 60, seed: int = 1,
                      graph_only: bool = False) -> list[str]:
    """Write the export under `folder`; returns its landing days."""
    rng = np.random.default_rng(seed)
    ids = [f"U{n:04d}" for n in range(1, users + 1)]
    day_list = [FIRST_DAY + timedelta(days=d) for d in range(days)]
    _write(folder, "users", day_list[0], "accounts.jsonl", [
        {"user_id": u, "created_at": _ts(day_list[0], 60 + i), "updated_at": _ts(day_list[0], 60 + i),
         "is_private": False, "is_verified": bool(i < 2)} for i, u in enumerate(ids)])
    k = min(10, users - 1)
    followees = {u: [str(v) for v in rng.choice([x for x in ids if x != u], size=k, replace=False)] for u in ids}
    _write(folder, "follows", day_list[0], "graph.jsonl", [
        {"follower_id": u, "followee_id": v, "action": "follow", "ts": _ts(day_list[0], 3_600 + k)}
        for k, (u, vs) in enumerate(followees.items()) for v in vs])
    # how much each viewer likes each author it follows: the signal clicks carry
    affinity = {(u, v): float(rng.beta(0.6, 2.5)) for u, vs in followees.items() for v in vs}
    posts: list[tuple[str, str, date, float]] = []  # (post, author, day, second of day)
    for day in day_list:
        made = [(f"p-{day:%Y%m%d}-{n}", str(a), day, float(rng.uniform(0, 40_000)))
                for n, a in enumerate(rng.choice(ids, size=users, replace=True))]
        posts += made
        _write(folder, "posts", day, "media.jsonl", [
            {"post_id": p, "author_id": a, "created_at": _ts(day, s), "media_type": "photo"} for p, a, _, s in made])
        if graph_only:
            continue
        recent = [p for p in posts if (day - p[2]).days <= 2]
        impressions, engagements = [], []
        for v in ids:
            mine = [p for p in recent if p[1] in followees[v]]
            others = [p for p in recent if p[1] != v and p[1] not in followees[v]]
            for r in range(2):
                request = f"req-{day:%Y%m%d}-{v}-{r}"
                at = 43_200 + 3_600 * r + float(rng.uniform(0, 3_000))
                shown = list(rng.permutation(len(mine))[:12])
                page = [mine[i] for i in shown]
                page += [others[i] for i in rng.permutation(len(others))[:3]]
                for pos, (post, author, _, _) in enumerate(page):
                    source = "in_network" if author in followees[v] else "other"
                    impressions.append({"request_id": request, "viewer_id": v, "post_id": post, "position": pos,
                                        "surface": "home", "source": source,
                                        "ts": _ts(day, at + pos)})
                    p_click = 0.02 + 0.6 * affinity.get((v, author), 0.0)
                    kind = "click" if rng.random() < p_click else ("view" if rng.random() < 0.05 else None)
                    if kind:
                        engagements.append({"event_id": f"ev-{request}-{pos}", "viewer_id": v, "post_id": post,
                                            "author_id": author, "type": kind, "ts": _ts(day, at + pos + 5),
                                            "surface": "home", "request_id": request})
        _write(folder, "impressions", day, "served.jsonl", impressions)
        _write(folder, "engagements", day, "clicks.jsonl", engagements)
    return [d.isoformat() for d in day_list]


def fingerprint(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: to prove nothing Loupe did not write was changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
