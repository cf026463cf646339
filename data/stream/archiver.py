"""Lands the event stream in the landing folder: every entry exactly once, as a line of
`<landing>/<log>/<day>/stream-p<p>-<first id>-<last id>.jsonl`, `day` its arrival day. Ingestion
then reads these files like any export's, so the batch lake stays the source of truth.

Exactly once, across crashes, by a commit in three steps per batch of one partition:
    1. the batch's lines are written and fsynced under `<landing>/_stream/staging/<log>/<day>/`
    2. the partition's mark `<landing>/_stream/partition-<p>.json` is replaced (atomically) by one
       naming the batch's last id and the lines archived so far per log and day: the commit
    3. the staged files are moved into their day folders, then the stream is trimmed up to the mark
A restart first finishes or drops what it finds staged: a file up to the mark is moved in place
(its commit happened), one after it is deleted (its entries are still in the stream, read again).
The stream is never trimmed past the mark, so a crash anywhere loses nothing and lands nothing twice.

Nothing is staged in the day folders themselves: ingestion would count a half-written file there.

One archiver per stream at a time: `archive` holds a lease on the stream's server (a redis-py
`Lock`, renewed before every batch), so a second one (the Dagster sensor and a manual
`python -m data.stream archive`) stops with `ArchiverBusy` instead of landing the same entries
again. A killed archiver's lease lapses after LEASE_S.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from data.days import day_end_ms, day_of_ms
from data.stream.entries import START, parse_id
from data.stream.valkey_stream import ValkeyStream

STATE_DIR = "_stream"  # at the landing folder's root: not a log's folder, ingestion never reads it
ARCHIVED_NAME = re.compile(r"stream-p\d+-\d+-\d+-\d+-\d+\.jsonl")


LEASE_S = 60  # an archiver's hold on the stream, renewed before each batch


class ArchiverBusy(RuntimeError):
    """Another archiver holds the stream's lease."""


@dataclass
class Mark:
    """A partition's commit: the last entry archived, the lines archived per `<log>/<day>`, and a
    reading of the producers' clock before which every entry of the partition is archived (taken
    before a read that reached the partition's end: it closes the days before it)."""

    archived_up_to: str = START
    lines: Counter = field(default_factory=Counter)
    complete_up_to_ms: int = 0

    @property
    def closed_up_to_ms(self) -> int:
        """Every entry appended before this time is archived (ids never go back in time)."""
        return max(parse_id(self.archived_up_to)[0], self.complete_up_to_ms)


def _read_mark(path: Path) -> Mark:
    saved = json.loads(path.read_text())
    return Mark(saved["archived_up_to"], Counter(saved["lines"]), saved["complete_up_to_ms"])


def read_marks(landing_dir: Path) -> dict[int, Mark]:
    """Every partition's mark the archiver committed in this landing folder (none: no stream)."""
    return {int(path.stem.split("-")[1]): _read_mark(path)
            for path in (Path(landing_dir) / STATE_DIR).glob("partition-*.json")}


def is_archived_file(path: str | Path) -> bool:
    return ARCHIVED_NAME.fullmatch(Path(path).name) is not None


def stream_fault(marks: dict[int, Mark], log: str, day: str, lines_per_file: dict[str, int]) -> str | None:
    """Whether a landing day's stream files hold exactly the lines the archiver archived for it, in
    words when not (None: they do, or no stream archives into the landing folder). `marks`: the
    folder's (`read_marks`).

    A day still open (the archiver has not read past its end on every partition) is judged on what
    is archived so far, as any export's day is ingested again when files land in it (the landing
    sensor); a mismatch then may be a batch the archiver was landing, which the message says."""
    if not marks:
        return None
    archived = sum(mark.lines.get(f"{log}/{day}", 0) for mark in marks.values())
    read = sum(n for path, n in lines_per_file.items() if is_archived_file(path))
    if read == archived:
        return None
    end_ms = day_end_ms(day)
    still_open = sorted(p for p, mark in marks.items() if mark.closed_up_to_ms < end_ms)
    fault = f"the stream files hold {read} lines, the archiver archived {archived}"
    if still_open:
        fault += (f" ({day} is still open on partitions {still_open}: a batch may have been landing; "
                  "ingest the day again)")
    return fault


@dataclass(frozen=True)
class ArchiveReport:
    entries: int  # archived by this call
    trimmed: int  # removed from the stream by this call
    lines: dict[str, int]  # every line archived so far, per `<log>/<day>` (all partitions)


class StreamArchiver:
    def __init__(self, stream: ValkeyStream, landing_dir: Path, batch: int = 5_000,
                 clock_ms: Callable[[], int] | None = None, on_step: Callable[[str], None] = lambda step: None):
        """`clock_ms`: the producers' clock, which entry ids follow (None: that of the server holding
        the partition; live mode passes its simulated one): a read that reaches a partition's end
        closes the days before it. `on_step` is told each step of a batch as it ends ("staged",
        "committed", "published"): where a test makes the process die."""
        self.stream = stream
        self.clock_ms = clock_ms
        self.on_step = on_step
        self.landing = Path(landing_dir)
        self.batch = batch
        self.state = self.landing / STATE_DIR

    # --- the marks -----------------------------------------------------------------------------
    def _mark_path(self, partition: int) -> Path:
        return self.state / f"partition-{partition}.json"

    def mark(self, partition: int) -> Mark:
        path = self._mark_path(partition)
        return _read_mark(path) if path.exists() else Mark()

    def _commit(self, partition: int, mark: Mark) -> None:
        path = self._mark_path(partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        _write_synced(tmp, json.dumps({"archived_up_to": mark.archived_up_to, "lines": dict(mark.lines),
                                       "complete_up_to_ms": mark.complete_up_to_ms}))
        os.replace(tmp, path)
        _sync_dir(path.parent)

    def archived_lines(self) -> dict[str, int]:
        """Lines archived so far per `<log>/<day>`, over every partition: what ingestion of that
        day's stream files must account for (landed + quarantined + duplicates)."""
        total: Counter = Counter()
        for mark in read_marks(self.landing).values():
            total.update(mark.lines)
        return dict(sorted(total.items()))

    # --- staging -------------------------------------------------------------------------------
    def _staged(self, partition: int) -> list[Path]:
        root = self.state / "staging"
        return sorted(root.glob(f"*/*/stream-p{partition}-*.jsonl")) if root.is_dir() else []

    def _final(self, staged: Path) -> Path:
        return self.landing / staged.parent.parent.name / staged.parent.name / staged.name

    def _publish(self, staged: list[Path]) -> None:
        for path in staged:
            final = self._final(path)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
        for folder in {self._final(p).parent for p in staged}:
            _sync_dir(folder)

    def _recover(self, partition: int, mark: Mark) -> None:
        """Finish the commit a crash interrupted, or drop the batch it never made."""
        up_to = parse_id(mark.archived_up_to)
        staged = self._staged(partition)
        committed = [p for p in staged if parse_id(_last_id(p)) <= up_to]
        for path in staged:
            if path not in committed:
                path.unlink()
        self._publish(committed)

    # --- archiving -----------------------------------------------------------------------------
    def _archive_batch(self, partition: int, mark: Mark) -> tuple[int, int]:
        """Archive up to `batch` entries of `partition` after `mark`, which it moves on (and commits);
        returns (entries archived, entries trimmed)."""
        # before the read: every entry appended before it is in it
        now_ms = self.clock_ms() if self.clock_ms else self.stream.server_ms(partition)
        entries = self.stream.after(partition, mark.archived_up_to, self.batch)
        # a read that reached the partition's end closes the days before `now_ms` (written once a day)
        closes = len(entries) < self.batch and day_of_ms(now_ms) != day_of_ms(mark.complete_up_to_ms)
        if closes:
            mark.complete_up_to_ms = now_ms
        if not entries:
            if closes and mark.archived_up_to != START:  # nothing ever archived: no state to write
                self._commit(partition, mark)
            return 0, self.stream.trim(partition, mark.archived_up_to)
        name = f"stream-p{partition}-{entries[0].id}-{entries[-1].id}.jsonl"
        by_file: dict[tuple[str, str], list[str]] = defaultdict(list)
        for entry in entries:
            by_file[(entry.log, entry.day)].append(entry.line)
        staged = []
        for (log, day), lines in by_file.items():
            path = self.state / "staging" / log / day / name
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_synced(path, "".join(line + "\n" for line in lines))
            staged.append(path)
        for folder in {p.parent for p in staged}:
            _sync_dir(folder)
        self.on_step("staged")
        mark.lines.update({f"{log}/{day}": len(lines) for (log, day), lines in by_file.items()})
        mark.archived_up_to = entries[-1].id
        self._commit(partition, mark)
        self.on_step("committed")
        self._publish(staged)
        self.on_step("published")
        return len(entries), self.stream.trim(partition, mark.archived_up_to)

    def archive(self) -> ArchiveReport:
        """Archive every partition until nothing is left to archive (entries appended meanwhile
        included), trimming as it goes; first finish or drop what a crashed archiver left staged.
        ArchiverBusy if another archiver is at it."""
        lease = self.stream.client.lock(f"{self.stream.prefix}:archiver", timeout=LEASE_S, blocking=False)
        if not lease.acquire():
            raise ArchiverBusy(f"another archiver is landing the stream {self.stream.prefix} (it holds "
                               f"{self.stream.prefix}:archiver, which lapses {LEASE_S} s after it dies)")
        archived = trimmed = 0
        try:
            for p in range(self.stream.partitions):
                mark = self.mark(p)  # read once: under the lease, only this archiver writes it
                self._recover(p, mark)
                while True:
                    lease.reacquire()  # raises if the lease lapsed: another archiver may be at it now
                    n, t = self._archive_batch(p, mark)
                    archived, trimmed = archived + n, trimmed + t
                    if n < self.batch:
                        break
        finally:
            with contextlib.suppress(redis.exceptions.LockError):  # lapsed: nothing of ours to release
                lease.release()
        return ArchiveReport(archived, trimmed, self.archived_lines())


def entries_of(path: Path) -> tuple[str, str]:
    """The first and last entry ids an archived file's name holds."""
    stem = path.name.removesuffix(".jsonl")
    _, _, first_ms, first_seq, last_ms, last_seq = stem.split("-")
    return f"{first_ms}-{first_seq}", f"{last_ms}-{last_seq}"


def _last_id(path: Path) -> str:
    return entries_of(path)[1]


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
