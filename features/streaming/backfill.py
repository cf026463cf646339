"""The real-time views offline: every row the stream feature worker would have written, computed
from a log of engagements (the lake's), for point-in-time training sets.

One definition, two executions. The worker keeps each entity's counters on the online store's
server and writes the entity's row as of its latest event (features/streaming/state.py). This
replays the same engagements in event-time order through the same pieces (`tokens`,
`CountedView.fields_of`, `Summer`) on counters held in memory, and keeps every row: one per entity
and event time, as of that event. Written where the views' push sources keep their offline rows
(`<lake>/features/realtime/<view>/`, features/feature_repo/definitions.py), Feast's historical
retrieval joins, for a request at t, each entity's latest row at or before t (within the view's
ttl): what the online store held at t.

Equal to the online rows when the stream delivered the engagements in event-time order. The lake
has no arrival times, so an engagement that arrived late counted online from its arrival and here
from its event time, and a line the worker refused as too late or in the future counts here.
The sequence view (not numeric, not a model input yet) is not replayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data import columns as c
from data import lake
from data.days import days_after, days_before, days_from
from data.vocabulary import Vocabulary
from features.streaming import spec
from features.streaming.rows import EngagementRow
from features.streaming.state import CountedView, Snapshot, Summer, counted_views, tokens
from features.tables import EVENT_TIMESTAMP

COLUMNS = (c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE, c.VALUE, c.TS)
_MS = pd.Timedelta(milliseconds=1)


class _State:
    """One entity's counters, as the worker's state hash holds them."""

    __slots__ = ("last_ms", "counters", "author")

    def __init__(self, author: int) -> None:
        self.last_ms = 0
        self.counters: dict[bytes, int] = {}
        self.author = author  # the post's author (the worker keeps it in a post's hash only)


def view_rows(engagements: pd.DataFrame, vocabulary: Vocabulary, keep_from_ms: int | None = None
              ) -> dict[str, pd.DataFrame]:
    """Per numeric real-time view (its name -> frame): its join keys, `event_timestamp` (the row's
    as-of time, the entity's event) and its features, one row per entity and event time.
    `keep_from_ms`: rows as of earlier times are not kept; the engagements before it only fill the
    windows (a day's rows need the day before it: the 24 h windows reach back that far)."""
    return Replay(vocabulary).rows(engagements, keep_from_ms)


class Replay:
    """The worker's counting, in memory: engagements fed in event-time order, frame after frame
    (each frame's times at or after the previous one's), counters carried from one to the next."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self.views = [_Replay(view) for view in counted_views(spec.engagement_types(vocabulary))]

    def rows(self, engagements: pd.DataFrame, keep_from_ms: int | None = None) -> dict[str, pd.DataFrame]:
        """The rows written while replaying `engagements` (as `view_rows` says), then forgotten:
        the next frame's rows are its own."""
        missing = [col for col in COLUMNS if col not in engagements.columns]
        if missing:
            raise ValueError(f"engagements lack required columns {missing}")
        unknown = sorted(set(engagements[c.TYPE].dropna().unique()) - set(self.vocabulary.engagement_names))
        if unknown:
            raise ValueError(f"engagement types the vocabulary does not define: {unknown} (the lake's rows were "
                             "ingested against another vocabulary?)")
        frame = engagements.assign(_ms=lake.epoch_floor(engagements[c.TS], _MS)).sort_values("_ms", kind="stable")
        values = [frame[col].tolist() for col in (c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE, c.VALUE, "_ms")]
        for viewer, post, author, kind, value, ts in zip(*values):
            row = EngagementRow(viewer, post, author, kind, None if _null(value) else value, ts)
            counted_tokens = tokens(row, self.vocabulary)
            for replay in self.views:
                replay.add(row, counted_tokens)
        return {replay.view.view: replay.take(keep_from_ms) for replay in self.views}


def backfill_days(lake_dir: Path, days: list[str], vocabulary: Vocabulary, out_lake: Path | None = None
                  ) -> dict[str, dict[str, int]]:
    """Write the real-time views' rows of `days` from the lake's engagements, into `out_lake`'s
    real-time folders (default: the same lake's). One replay, a calendar day at a time, from the
    day before the first (it fills the windows; its rows are not kept) to the last; days between
    that are not asked for are replayed, not written. A day's engagements are those whose time
    falls on it, from its partition and the next (late lines land a day later), once each by
    `event_id`. -> rows written per day and view."""
    days = sorted(days)
    wanted, replay, written = set(days), Replay(vocabulary), {}
    for day in days_from(days_before(days[0], 1), days[-1]):
        rows = replay.rows(engagements_of(Path(lake_dir), day))
        if day in wanted:
            write_view_rows(rows, out_lake or lake_dir, day)
            written[day] = {view: len(frame) for view, frame in rows.items()}
    return written


def engagements_of(lake_dir: Path, day: str) -> pd.DataFrame:
    """The lake's engagements whose time falls on `day`: its partition's and the next's (late
    lines), once each by `event_id`."""
    frame = lake.read_partitions(lake_dir, "engagements", [day, days_after(day, 1)], [c.EVENT_ID, *COLUMNS],
                                 lake.ts_on_day(day))
    return frame.drop_duplicates(c.EVENT_ID)


def write_view_rows(rows: dict[str, pd.DataFrame], lake_dir: Path, day: str) -> list[Path]:
    """Each view's rows as `<lake>/features/realtime/<view>/<day>.parquet` (replacing that day's
    file: it is Loupe's own, derived from the lake)."""
    written = []
    for view, frame in rows.items():
        path = realtime_dir(lake_dir, view) / f"{day}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_suffix(".parquet.tmp")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), staged)
        staged.replace(path)  # whole or not at all: the offline store reads the folder's glob
        written.append(path)
    return written


def realtime_dir(lake_dir: Path, view: str) -> Path:
    """Where a real-time view's offline rows live: its push source's batch source, one file per
    day, `<day>.parquet`, holding the rows as of that day (retrieval reads a request's day and the
    ones its ttl reaches back to by these names)."""
    return Path(lake_dir) / "features" / "realtime" / view


def registry_lake(store) -> Path:
    """The lake whose real-time folders a Feast registry's push sources read (the one it was
    applied for): `realtime_dir(registry_lake(store), view)` is where retrieval looks."""
    return Path(store.get_data_source(f"{spec.POST_VIEW}_batch").path).parents[3]


class _Replay:
    """One view's replay: its entities' counters, and every row written."""

    def __init__(self, view: CountedView):
        self.view = view
        self.summer = Summer(view)
        self.states: dict[tuple[int, ...], _State] = {}
        self.keys: list[tuple[int, ...]] = []
        self.as_of: list[int] = []
        self.values: list[list[float]] = []

    def add(self, row: EngagementRow, counted_tokens: Iterable[str]) -> None:
        ids = _ids(self.view, row)
        state = self.states.get(ids)
        if state is None:
            state = self.states[ids] = _State(row.author_id)
        counters = state.counters
        for name in self.view.fields_of(counted_tokens, row.ts_ms):
            key = name.encode()
            counters[key] = counters.get(key, 0) + 1
        state.last_ms = max(state.last_ms, row.ts_ms)
        values, prune = self.summer.features(Snapshot(state.last_ms, counters))
        for name in prune:  # as the worker's HDEL: no window reaches them again
            del counters[name]
        self.keys.append(ids)
        self.as_of.append(state.last_ms)
        self.values.append(values)

    def take(self, keep_from_ms: int | None) -> pd.DataFrame:
        """The rows written since the last take (those as of `keep_from_ms` or later)."""
        frame = self._frame(keep_from_ms)
        self.keys, self.as_of, self.values = [], [], []
        return frame

    def _frame(self, keep_from_ms: int | None) -> pd.DataFrame:
        as_of = np.array(self.as_of, dtype=np.int64)
        kept = slice(None) if keep_from_ms is None else as_of >= keep_from_ms
        keys = np.array(self.keys, dtype=np.int64).reshape(len(self.keys), len(self.view.join_keys))[kept]
        frame = pd.DataFrame({k: keys[:, j] for j, k in enumerate(self.view.join_keys)})
        frame[EVENT_TIMESTAMP] = pd.to_datetime(as_of[kept], unit="ms", utc=True)
        values = np.array(self.values, dtype=np.float32).reshape(len(self.values), len(self.view.names))[kept]
        for j, name in enumerate(self.view.names):
            frame[name] = values[:, j]
        # several events of one entity at one time: the row after the last of them, as online
        return frame.drop_duplicates([*self.view.join_keys, EVENT_TIMESTAMP], keep="last").reset_index(drop=True)


def _ids(view: CountedView, row: EngagementRow) -> tuple[int, ...]:
    return tuple(int(getattr(row, key)) for key in view.join_keys)


def _null(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
