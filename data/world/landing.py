"""Newline-delimited JSON landing files, like a production export, with the dirt exports have.

Lines are built column-wise with Arrow string kernels (no Python object per row): each contract
column is rendered as JSON text, then the pieces are joined. The few dirty lines are made in
Python from clean ones, one flaw per line so each maps to exactly one quarantine reason.

Per file, in this order: ~1% of event lines move to the next landing day (late), a few lines are
re-sent in the next day's file, a few are copied within the file, a few corrupted copies are
added, and the whole file is shuffled (exports are not sorted by time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data.contracts import CONTRACTS, LOG_TYPES
from data.days import DAY_MS, day_start_ms
from data.world.config import DIRT_KINDS, MALFORMED_KINDS, DirtRates
from data.world.util import format_ts, rng_for

EVENT_LOGS = ("engagements", "impressions")
# Which malformed kinds make sense for which log (users have no enums or references).
APPLICABLE = {
    "users": ("malformed_json", "missing_required", "bad_type", "ts_in_future"),
    **{
        log: MALFORMED_KINDS
        for log in (
            "posts", "follows", "blocks", "engagements", "impressions", "stories", "post_labels"
        )
    },
}
# Kinds every world has at least one of (so even tiny exercises every quarantine path).
FORCED = {
    log: APPLICABLE[log] if log in EVENT_LOGS else ("malformed_json", "bad_type")
    for log in LOG_TYPES
}
BAD_ENUM_VALUES = {
    "posts": {"media_type": ("gif", "reel")},
    "follows": {"action": ("superfollow", "request")},
    "blocks": {"action": ("report", "restrict")},
    "engagements": {"type": ("superlike", "double_tap"), "surface": ("reels",)},
    "impressions": {"surface": ("stories",), "source": ("mystery_box",)},
    "stories": {"media_type": ("boomerang", "reel")},
    "post_labels": {"label": ("nsfw", "clickbait")},
}
UNKNOWN_REFERENCE_COLUMN = {
    "posts": "author_id",
    "follows": "followee_id",
    "blocks": "blocked_id",
    "engagements": "post_id",
    "impressions": "post_id",
    "stories": "author_id",
    "post_labels": "post_id",
}
UNKNOWN_ID_BASE = 9_000_000_000  # no user or post id ever gets this large


# --- encoding -------------------------------------------------------------------------------------
def json_int(x: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(x, dtype=np.int64)), pa.string())


def json_str(x: pa.Array | np.ndarray | list) -> pa.Array:
    """Quote plain strings (ids, enum values: nothing to escape)."""
    arr = x if isinstance(x, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(x).astype(str))
    return pc.binary_join_element_wise('"', arr, '"', "")


def json_enum(codes: np.ndarray, values: tuple[str, ...]) -> pa.Array:
    quoted = pa.array([f'"{v}"' for v in values])
    return quoted.take(pa.array(np.asarray(codes, dtype=np.int64)))


def json_ts(ms: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    text = pc.binary_join_element_wise('"', format_ts(ms), '"', "")
    return nullable(text, null)


def json_bool(b: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(b, dtype=bool)), "true", "false")


def nullable(text: pa.Array, null: np.ndarray | None) -> pa.Array:
    if null is None or not np.any(null):
        return text
    return pc.if_else(pa.array(np.asarray(null, dtype=bool)), "null", text)


def encode(log: str, columns: dict[str, pa.Array | str]) -> pa.Array:
    """JSON text per contract column (or a constant literal) -> one JSON object line per row."""
    names = CONTRACTS[log].column_names
    if set(columns) != set(names):
        raise ValueError(f"{log}: columns {sorted(columns)} != contract {sorted(names)}")
    parts: list = []
    for i, name in enumerate(names):
        parts.append(("{" if i == 0 else ",") + f'"{name}":')
        parts.append(columns[name])
    parts.append("}\n")
    # Merge adjacent literals: the kernel takes arrays and scalars alike.
    merged: list = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    if not any(isinstance(p, (pa.Array, pa.ChunkedArray)) for p in merged):
        raise ValueError("need at least one array column")
    out = pc.binary_join_element_wise(*merged, "")
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


# --- dirt -----------------------------------------------------------------------------------------
def _corrupt(kind: str, log: str, line: str, rng: np.random.Generator, landing_day: date) -> str:
    """One flaw of `kind` applied to a clean line (with trailing newline)."""
    contract = CONTRACTS[log]
    row = json.loads(line)
    if kind == "malformed_json":
        body = line.rstrip("\n")
        if rng.random() < 0.6:  # truncated export: the tail of the line is missing
            bad = body[: len(body) - int(rng.integers(1, min(12, len(body) - 2)))]
        else:  # garbled: a key-value separator lost
            bad = body.replace('":', '" ', 1)
        try:
            json.loads(bad)
            bad = body[:-1]
        except ValueError:
            pass
        return bad + "\n"
    if kind == "missing_required":
        col = contract.required[int(rng.integers(len(contract.required)))]
        if rng.random() < 0.5:
            del row[col]
        else:
            row[col] = None
    elif kind == "bad_type":  # an id or position that is no integer, or a value of the wrong kind
        options = [f.name for f in contract.schema if f.type in (pa.int64(), pa.int32())]
        options += ["is_private"] if log == "users" else []
        options += ["value"] if row.get("type") == "dwell" else []
        col = options[int(rng.integers(len(options)))]
        wrong = {"is_private": "maybe", "value": "long"}
        # Not a string: a string id ("U123") is valid (data.ids); a fraction or a boolean never is.
        row[col] = wrong.get(col, row[col] + 0.5 if rng.random() < 0.5 else True)
    elif kind == "bad_enum":
        options = BAD_ENUM_VALUES[log]
        col = list(options)[int(rng.integers(len(options)))]
        row[col] = options[col][int(rng.integers(len(options[col])))]
    elif kind == "ts_in_future":
        ms = day_start_ms(landing_day) + int(rng.integers(2, 30)) * DAY_MS + int(rng.integers(0, DAY_MS))
        row[contract.time_column] = format_ts(np.array([ms]))[0].as_py()
    elif kind == "unknown_reference":
        row[UNKNOWN_REFERENCE_COLUMN[log]] = UNKNOWN_ID_BASE + int(rng.integers(0, 1_000_000_000))
    else:
        raise ValueError(kind)
    return json.dumps(row, separators=(",", ":")) + "\n"


@dataclass
class LandingWriter:
    """Writes landing/<log>/<YYYY-MM-DD>/part-NNNNN.jsonl and counts what it wrote."""

    root: Path
    days: list[date]
    seed: int
    rates: DirtRates
    rows: dict[str, int] = field(default_factory=lambda: {log: 0 for log in LOG_TYPES})
    clean: dict[str, int] = field(default_factory=lambda: {log: 0 for log in LOG_TYPES})
    dirt: dict[str, dict[str, int]] = field(
        default_factory=lambda: {log: dict.fromkeys(DIRT_KINDS, 0) for log in LOG_TYPES}
    )
    _carry: dict[tuple[str, int], list[pa.Array]] = field(default_factory=dict)
    _forced_done: set[str] = field(default_factory=set)

    def write(self, log: str, day: int, part: int, lines: pa.Array) -> Path:
        """Write one file of clean lines (+ dirt). Part 0 of a day also gets yesterday's carry."""
        rng = rng_for(self.seed, "landing", LOG_TYPES.index(log), day, part)
        r = self.rates
        last = day == len(self.days) - 1
        n = len(lines)
        self.clean[log] += n
        extra: list[pa.Array] = []

        if log in EVENT_LOGS and not last:
            late = rng.random(n) < r.late
            self._carry.setdefault((log, day + 1), []).append(lines.filter(pa.array(late)))
            self.dirt[log]["late"] += int(late.sum())
            lines = lines.filter(pa.array(~late))
            n = len(lines)
        if n:
            if not last:
                resend = np.flatnonzero(rng.random(n) < r.duplicate_next_day)
                self._carry.setdefault((log, day + 1), []).append(
                    lines.take(pa.array(resend, pa.int64()))
                )
                self.dirt[log]["duplicate"] += len(resend)
            same = np.flatnonzero(rng.random(n) < r.duplicate_same_file)
            extra.append(lines.take(pa.array(same, pa.int64())))
            self.dirt[log]["duplicate"] += len(same)

            counts = {k: int(rng.binomial(n, r.malformed)) for k in APPLICABLE[log]}
            if log not in self._forced_done:
                for k in FORCED[log]:
                    counts[k] = max(counts[k], 1)
                self._forced_done.add(log)
            total = min(sum(counts.values()), n)
            sources = rng.choice(n, size=total, replace=False)  # distinct sources: distinct lines
            kinds = [k for k, c in counts.items() for _ in range(c)][:total]
            texts = lines.take(pa.array(sources, pa.int64())).to_pylist()
            day_ = self.days[day]
            bad = [_corrupt(k, log, t, rng, day_) for k, t in zip(kinds, texts, strict=True)]
            for k in kinds:
                self.dirt[log][k] += 1
            extra.append(pa.array(bad, pa.string()))
        if part == 0:
            extra.extend(self._carry.pop((log, day), []))

        out = pa.concat_arrays([lines.cast(pa.string()), *[e.cast(pa.string()) for e in extra]])
        out = out.take(pa.array(rng.permutation(len(out)), pa.int64()))  # exports are not sorted
        path = self.root / log / self.days[day].isoformat() / f"part-{part:05d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_lines(path, out)
        self.rows[log] += len(out)
        return path


def _write_lines(path: Path, arr: pa.Array) -> None:
    """Write the concatenated line bytes of a string array straight from its Arrow buffers."""
    with open(path, "wb") as f:
        if len(arr) == 0:
            return
        offsets = np.frombuffer(
            arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4
        )
        data = arr.buffers()[2]
        f.write(memoryview(data)[offsets[0] : offsets[-1]])
