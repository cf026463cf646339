"""Loupe's own read of one landing day, before Spark sees a byte of it (plain Python, streaming).

For every entry of `landing/<log>/<day>/` it decides, and says why:
    read      a regular file named `*.jsonl` or `*.jsonl.gz` (a link counts if it stays inside the
              landing folder): every physical line is counted here, independently of Spark
    ignored   any other name, a folder, a pipe, a broken link, a link out of the landing folder
              (never followed): listed with its reason, the day's check fails
    rejected  a binary or unreadable file (`binary_file`, `unreadable_file`): one quarantine row
              names it, nothing of it lands, the day's check fails; the other files still land

A physical line ends at b"\\n"; a last line without one counts too, an empty file has none. A "\\r"
before the "\\n" belongs to the line ending (Spark strips it before parsing); any other "\\r" is a
byte of the line. A UTF-8 byte-order mark at the start of a file is dropped.

Lines Spark must not judge are quarantined here, one row each:
    line_too_long  more than `max_line_bytes` bytes (line ending not counted); raw_line keeps the
                   first max_line_bytes bytes, and the line is never held whole in memory
    bad_encoding   not valid UTF-8; raw_line shows each invalid byte as \\xNN

Spark is handed exact paths only. A file whose path holds anything but [A-Za-z0-9._/-] (glob
characters, ':', spaces, ...), whose name starts with '.' or '_' (Spark's hidden-file filter), which
is a link, or which needs a line quarantined here is copied (its good lines only) under a safe name
into Loupe's scratch folder, and its rows keep the landing path as `source_file`. Landing files are
never renamed or changed.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from data import columns as c
from data.lake import LANDING_SUFFIXES

BAD_ENCODING, LINE_TOO_LONG = "bad_encoding", "line_too_long"
BINARY_FILE, UNREADABLE_FILE = "binary_file", "unreadable_file"

UTF8_BOM = b"\xef\xbb\xbf"
WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")  # UTF-16 / UTF-32 text
HEAD_BYTES = 8192  # a NUL byte in these makes a file binary
CHUNK_BYTES = 256 * 1024
QUARANTINE_BATCH = 10_000
# A path Spark reads as exactly itself: no glob character (* ? [ ] { } \), no ':' (Hadoop takes it
# for a URI scheme), nothing Spark would URL-encode in `_metadata.file_path`.
SPARK_SAFE_PATH = re.compile(r"[A-Za-z0-9._/-]+")
QUARANTINE_SCHEMA = pa.schema([(c.SOURCE_FILE, pa.string()), (c.RAW_LINE, pa.string()), (c.REASON, pa.string())])


class ScratchError(Exception):
    """Loupe's scratch folder cannot be used: a path Spark cannot be handed exactly, or a failed
    write (a full disk). Never blamed on a landing file."""


@dataclass(frozen=True)
class SparkSource:
    spark_path: str  # what Spark reads: the landing file itself, or its copy in the scratch folder
    source_file: str  # the landing file its lines came from


@dataclass
class LandingDay:
    files: list[str] = field(default_factory=list)  # landing files read, in name order
    lines: dict[str, int] = field(default_factory=dict)  # physical lines per file read
    spark_sources: list[SparkSource] = field(default_factory=list)
    quarantined_by_reason: Counter = field(default_factory=Counter)  # lines quarantined here
    quarantine_files: list[str] = field(default_factory=list)  # Parquet of those lines + rejected files
    ignored: dict[str, str] = field(default_factory=dict)  # path -> why it is not a landing file
    rejected: dict[str, str] = field(default_factory=dict)  # path -> "<reason>: <detail>"

    @property
    def rows_read(self) -> int:
        return sum(self.lines.values())


def physical_lines(data: bytes) -> int:
    """The number of physical lines of a file's bytes: each b"\\n", and a last line without one."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def spark_safe(path: Path) -> bool:
    return bool(SPARK_SAFE_PATH.fullmatch(str(path))) and not path.name.startswith((".", "_"))


def is_landing_name(name: str) -> bool:
    return name.endswith(LANDING_SUFFIXES)


def not_read_because(path: Path, root: Path) -> str | None:
    """Why a day folder entry is not a landing file to read (None: read it). `root` is the resolved
    landing folder: a link (of the file, or of a folder above it) that leads out of it is not followed."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        if path.is_symlink():
            return f"a broken link (to {os.readlink(path)}): not followed"
        return "cannot be inspected: it vanished or a link above it is broken"
    if not target.is_relative_to(root):
        return f"a link to {target}, outside the landing folder {root}: not followed"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot be inspected: {exc}"
    if stat.S_ISDIR(mode):
        return "a folder: landing files sit directly in the day folder, folders are not read"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, socket or device)"
    if not is_landing_name(path.name):
        suffixes = " and ".join("*" + s for s in LANDING_SUFFIXES)
        return f"not a landing file name: only {suffixes} are read (names are case-sensitive)"
    return None


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class _Unclean(Exception):
    """A file Spark cannot read as it is (a line to quarantine here, a byte-order mark)."""


class _QuarantineWriter:
    """Lines quarantined here, for one landing file: a Parquet file in the scratch folder, opened on
    the first line, written in batches."""

    def __init__(self, path: Path, source_file: str):
        self.path, self.source_file = path, source_file
        self.rows: list[tuple[str, str]] = []
        self.writer: pq.ParquetWriter | None = None
        self.counts: Counter = Counter()

    def add(self, raw_line: str, reason: str) -> None:
        self.rows.append((raw_line, reason))
        self.counts[reason] += 1
        if len(self.rows) >= QUARANTINE_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        raw, reasons = zip(*self.rows)
        table = pa.table([[self.source_file] * len(raw), list(raw), list(reasons)], schema=QUARANTINE_SCHEMA)
        try:
            if self.writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.writer = pq.ParquetWriter(self.path, QUARANTINE_SCHEMA)
            self.writer.write_table(table)
        except OSError as exc:
            raise ScratchError(f"cannot write {self.path}: {exc}") from exc
        self.rows = []

    def close(self) -> bool:
        """Finish the file; True if it holds rows."""
        self.flush()
        if self.writer is not None:
            self.writer.close()
            return True
        return False

    def discard(self) -> None:
        self.rows = []
        if self.writer is not None:
            self.writer.close()
        self.path.unlink(missing_ok=True)


class _Lines:
    """Judges the physical lines of one file: counts them, quarantines those Spark must not see, and
    copies the others to `out` (None: only check that the file is clean, stopping at the first flaw)."""

    def __init__(self, limit: int, out: BinaryIO | None, quarantine: _QuarantineWriter | None):
        self.limit, self.out, self.quarantine = limit, out, quarantine
        self.count = 0

    def flaw(self) -> None:
        if self.out is None:
            raise _Unclean

    def write(self, data: bytes) -> None:
        try:
            self.out.write(data)
        except OSError as exc:
            raise ScratchError(f"cannot write Loupe's copy {self.out.name}: {exc}") from exc

    def too_long(self, head: bytes) -> None:
        self.flaw()
        self.count += 1
        self.quarantine.add(head[: self.limit].decode("utf-8", "backslashreplace"), LINE_TOO_LONG)

    def one(self, line: bytes) -> None:
        """One whole line, its b"\\n" removed."""
        if len(line) - line.endswith(b"\r") > self.limit:
            return self.too_long(line)
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            self.flaw()
            self.count += 1
            self.quarantine.add(line.decode("utf-8", "backslashreplace"), BAD_ENCODING)
            return
        self.count += 1
        if self.out is not None:
            self.write(line + b"\n")

    def block(self, block: bytes, terminated: bool = True) -> None:
        """Whole lines: each ends with b"\\n" (the last one too when `terminated`)."""
        try:
            block.decode("utf-8")  # lines end at b"\n", so no character is cut
            fits = len(block) - terminated <= self.limit or max(map(len, block.split(b"\n"))) <= self.limit
        except UnicodeDecodeError:
            fits = False
        if fits:
            self.count += block.count(b"\n") + (not terminated)
            if self.out is not None:
                self.write(block if terminated else block + b"\n")
            return
        lines = block.split(b"\n")
        for line in lines[:-1] if terminated else lines:
            self.one(line)


def _split(chunks: Iterator[bytes], lines: _Lines) -> None:
    """Feed a file's bytes to `lines` as whole lines, never holding a line longer than the limit."""
    keep = lines.limit + 2  # enough to judge a line ending in "\r" at the limit
    carry, carry_len = b"", 0  # the current line's first bytes, and its full length so far
    for chunk in chunks:
        end = chunk.rfind(b"\n")
        if end < 0:
            if carry_len < keep:
                carry += chunk[: keep - carry_len]
            carry_len += len(chunk)
            continue
        if carry_len >= keep:  # the current line is already too long: it ends in this chunk
            lines.too_long(carry)
            block = chunk[chunk.find(b"\n") + 1 : end + 1]
        else:
            block = carry + chunk[: end + 1]
        if block:
            lines.block(block)
        carry, carry_len = chunk[end + 1 : end + 1 + keep], len(chunk) - end - 1
    if carry_len >= keep:
        lines.too_long(carry)
    elif carry_len:
        lines.block(carry, terminated=False)


def open_landing_file(path: Path) -> BinaryIO:
    """A landing file's bytes, gunzipped when its name says so."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _read(path: Path, lines: _Lines) -> None:
    """Stream one landing file through `lines` (a leading UTF-8 byte-order mark is dropped)."""
    try:
        with open_landing_file(path) as handle:
            head = handle.read(HEAD_BYTES)
            if head.startswith(WIDE_BOMS):
                raise _Rejected(BINARY_FILE, "UTF-16 or UTF-32 text (a byte-order mark): landing files are UTF-8")
            nul = head.find(b"\x00")
            if nul >= 0:
                raise _Rejected(BINARY_FILE, f"a NUL byte at offset {nul}: not newline-delimited JSON text")
            bom = head.startswith(UTF8_BOM)
            if bom:
                lines.flaw()
                head = head[len(UTF8_BOM) :]
            _split(_chunks(head, handle), lines)
            if bom and not lines.count:  # the mark alone is still a (blank) physical line
                lines.block(b"\n")
    except (OSError, EOFError, zlib.error) as exc:
        raise _Rejected(UNREADABLE_FILE, f"{type(exc).__name__}: {exc}") from exc


def _chunks(head: bytes, handle: BinaryIO) -> Iterator[bytes]:
    if head:
        yield head
    while chunk := handle.read(CHUNK_BYTES):
        yield chunk


def _check_scratch(path: Path, needed_for: str) -> None:
    if not spark_safe(path):
        raise ScratchError(
            f"Loupe's scratch folder {path.parent} holds characters Spark reads as a pattern or a URI "
            f"(only {SPARK_SAFE_PATH.pattern} are safe), and is needed for {needed_for}: move "
            "LOUPE_HOME (the lake) to a plain path")


def read_day(folder: Path, landing_root: Path, scratch: Path, max_line_bytes: int) -> LandingDay:
    """Read one landing day folder (see the module doc). `scratch` is Loupe's own folder for this
    (log, day): emptied first; the caller removes it once Spark has written the partition."""
    # Absolute and normalised: Spark reports each path it read in full, and that must match.
    folder, scratch = Path(os.path.abspath(folder)), Path(os.path.abspath(scratch))
    shutil.rmtree(scratch, ignore_errors=True)
    day = LandingDay()
    if not folder.is_dir():
        return day
    root = Path(landing_root).resolve()
    for index, path in enumerate(sorted(folder.iterdir())):
        why = not_read_because(path, root)
        if why is not None:
            day.ignored[str(path)] = why
            continue
        source = str(path)
        quarantine = _QuarantineWriter(scratch / "quarantine" / f"{index:05d}.parquet", source)
        staged = scratch / "lines" / f"{index:05d}.jsonl"
        try:
            if spark_safe(path) and not path.is_symlink():
                try:  # the common case: one pass that only counts, and Spark reads the file itself
                    lines = _Lines(max_line_bytes, None, None)
                    _read(path, lines)
                    day.lines[source] = lines.count
                    day.spark_sources.append(SparkSource(source, source))
                    day.files.append(source)
                    continue
                except _Unclean:
                    pass
            _check_scratch(staged, source)
            staged.parent.mkdir(parents=True, exist_ok=True)
            with open(staged, "wb") as out:
                lines = _Lines(max_line_bytes, out, quarantine)
                _read(path, lines)
        except _Rejected as exc:
            quarantine.discard()
            staged.unlink(missing_ok=True)
            day.rejected[source] = str(exc)
            continue
        day.lines[source] = lines.count
        day.spark_sources.append(SparkSource(str(staged), source))
        day.files.append(source)
        if quarantine.close():
            day.quarantine_files.append(str(quarantine.path))
            day.quarantined_by_reason.update(quarantine.counts)
    if day.rejected:
        rejected = scratch / "quarantine" / "rejected.parquet"
        _check_scratch(rejected, f"the quarantine rows of {sorted(day.rejected)}")
        rejected.parent.mkdir(parents=True, exist_ok=True)
        files = sorted(day.rejected)
        pq.write_table(pa.table([files, [None] * len(files), [day.rejected[f].split(":")[0] for f in files]],
                                schema=QUARANTINE_SCHEMA), rejected)
        day.quarantine_files.append(str(rejected))
    return day
