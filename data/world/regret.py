"""Regret: what a simulated viewer remembers pushing away, and what it does when shown it again.

Live mode only (data/world/live.py; docs/live_mode.md "Regret"): the daily simulator's worlds are
drawn without it, so their logs and every benchmark on them stay as they were.

A push-away is a realised hide or report: the viewer's hidden dislike of a post, said in one of
the product's words (`said_as`): a hide as "not interested" (the post), "see fewer" (its author) or
a plain hide. Each leaves pressure on the (viewer, author) pair,

    g = sum over the pair's push-aways of PUSH_WEIGHT[said] * 0.5 ** (age / HALF_LIFE_DAYS),

and a post of that author shown to that viewer is judged with it (truth.py: `REGRET * g` on the
hide and report logits; a fresh report makes the next hide ~20x likelier), and a viewer who examines
one may leave the session there (`LEAVE_RATE`: later posts are never examined). The memory starts
from the world's own history (the truth's impressions of the last MEMORY_DAYS) and grows with what
viewers push away live; the live part is kept in a file of live mode's own (Settings.live_regret_file)
for the next play.

The half-life is the viewers' and is chosen apart from the service's fatigue (candidate_gen
config `[fatigue]`, 72 h): a week, so the service's default does not match the truth by
construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from data.days import DAY_MS

HALF_LIFE_DAYS = 7.0
MEMORY_DAYS = 28  # four half-lives: what is older weighs under 1/16 and is forgotten
PUSH_WEIGHT = {"hide": 1.0, "not_interested": 1.0, "see_fewer": 2.0, "report": 3.0}
# how a viewer says a hide (the rest stay plain hides); a report is always a report
HIDE_SAID_AS = {"not_interested": 0.3, "see_fewer": 0.2}
LEAVE_RATE = 0.2  # P(leave after examining a post with pressure g) = 1 - exp(-LEAVE_RATE g)


def said_as(rng: np.random.Generator, action: str) -> str:
    """The word a viewer uses for a realised `action` (hide or report)."""
    if action != "hide":
        return action
    u, edge = rng.random(), 0.0
    for word, share in HIDE_SAID_AS.items():
        edge += share
        if u < edge:
            return word
    return "hide"


def leave(rng: np.random.Generator, examined: np.ndarray, pressure: np.ndarray) -> np.ndarray:
    """`examined` with every post after the one the viewer left at unexamined (a copy). No draw at
    all when nothing on the page carries pressure: a page without regret plays as before."""
    if not pressure.any():
        return examined
    gone = examined & (rng.random(len(examined)) < 1.0 - np.exp(-LEAVE_RATE * pressure))
    if not gone.any():
        return examined
    out = examined.copy()
    out[int(np.argmax(gone)) + 1:] = False
    return out


class Regret:
    """Push-aways per viewer: author -> [(ts_ms, weight)]. With `kept` (a file of live mode's own),
    the live push-aways of earlier plays are read back, and `keep()` rewrites it."""

    def __init__(self, kept: Path | None = None):
        self.kept = kept
        self._pushes: dict[int, dict[int, list[tuple[int, float]]]] = {}
        self._live: list[tuple[int, int, int, float]] = []  # what `keep` writes
        self._changed = False
        if kept is not None and kept.exists():
            with np.load(kept) as saved:
                for row in zip(*(saved[k].tolist() for k in ("viewer", "author", "ts", "weight")), strict=True):
                    self._add(*row, live=True)
        self._changed = False

    def _add(self, viewer: int, author: int, ts_ms: int, weight: float, live: bool) -> None:
        self._pushes.setdefault(viewer, {}).setdefault(author, []).append((ts_ms, weight))
        if live:
            self._live.append((viewer, author, ts_ms, weight))
            self._changed = True

    @classmethod
    def load(cls, truth_dir: Path | None, kept: Path | None, now_ms: int) -> Regret:
        """The memory at `now_ms`: the world's hides and reports of the last MEMORY_DAYS (the truth's
        impressions) and what earlier plays kept."""
        regret = cls(kept)
        folder = truth_dir / "impressions" if truth_dir is not None else None
        if folder is None or not any(folder.glob("*.parquet")):
            return regret
        first = pa.scalar(now_ms - MEMORY_DAYS * DAY_MS, pa.timestamp("ms", tz="UTC"))
        table = pads.dataset(folder).to_table(
            columns=["viewer_id", "author_id", "ts", "y_hide"],
            filter=(pads.field("y_hide") | pads.field("y_report")) & (pads.field("ts") >= first))
        ts = table.column("ts").cast(pa.int64()).to_pylist()  # epoch ms
        rows = zip(table.column("viewer_id").to_pylist(), table.column("author_id").to_pylist(), ts,
                   table.column("y_hide").to_pylist(), strict=True)
        for v, a, t, hide in rows:
            regret._add(v, a, t, PUSH_WEIGHT["hide" if hide else "report"], live=False)
        return regret

    def push(self, viewer: int, author: int, said: str, ts_ms: int) -> None:
        self._add(viewer, author, ts_ms, PUSH_WEIGHT[said], live=True)

    def pressure(self, viewer: int, authors: np.ndarray, now_ms: int) -> np.ndarray:
        """g per post of `authors` shown to `viewer` at `now_ms` (0 for an author never pushed away)."""
        mine = self._pushes.get(viewer)
        out = np.zeros(len(authors))
        if not mine:
            return out
        for k, author in enumerate(authors.tolist()):
            for ts, weight in mine.get(author, ()):
                age_days = max(0, now_ms - ts) / DAY_MS
                if age_days <= MEMORY_DAYS:
                    out[k] += weight * 0.5 ** (age_days / HALF_LIFE_DAYS)
        return out

    def keep(self, now_ms: int) -> None:
        """Rewrite `kept` with the live push-aways still remembered at `now_ms` (tmp file + rename),
        when any was added since the last time."""
        if self.kept is None or not self._changed:
            return
        self._changed = False
        self._live = [row for row in self._live if row[2] >= now_ms - MEMORY_DAYS * DAY_MS]
        columns = list(zip(*self._live, strict=True)) or [(), (), (), ()]
        self.kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.kept.with_name(self.kept.name + ".tmp.npz")
        np.savez(tmp, viewer=np.asarray(columns[0], np.int64), author=np.asarray(columns[1], np.int64),
                 ts=np.asarray(columns[2], np.int64), weight=np.asarray(columns[3], np.float64))
        tmp.replace(self.kept)
