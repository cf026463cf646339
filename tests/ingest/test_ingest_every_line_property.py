"""Property: whatever lands (hostile names, latin-1 and byte-order marks, CRLF / LF / CR endings, empty
and over-long lines, gzip, binary and UTF-16 files, wrong suffixes), ingestion reads every physical
line and accounts for it: read = landed + quarantined + duplicates, with `read` counted here, by the
test, from the bytes it wrote, never by the code under test.

Examples are few and derandomized (each runs a real ingest on the shared Spark session); the pure
Python reader is checked on many more, with read buffers of a few bytes."""

from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from data.ingest import landing as landing_read
from data.ingest.config import IngestConfig
from data.ingest.partition import ingest_partition, lake_row_count, scratch_dir
from tests.builders import DAY, user

LIMIT = 300  # max_line_bytes of these runs: over-long lines stay cheap to make
BOM = b"\xef\xbb\xbf"
READ_SUFFIXES = (".jsonl", ".jsonl.gz")


# --- the independent count: plain bytes, no code under test ---------------------------------------
def split_physical(data: bytes) -> list[bytes]:
    """The physical lines of a file's bytes: split at b"\\n"; a last line without one counts."""
    if not data:
        return []
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") else lines


@dataclass(frozen=True)
class Landed:
    name: str
    data: bytes  # the file's bytes before any gzip
    kind: str  # utf-8, utf-8-sig, latin-1, utf-16, binary

    @property
    def stored(self) -> bytes:
        return gzip.compress(self.data, mtime=0) if self.name.endswith(".gz") else self.data

    @property
    def read(self) -> bool:
        return self.name.endswith(READ_SUFFIXES)

    @property
    def rejected(self) -> bool:  # a binary file, or text that is not UTF-8 at all
        return self.read and self.kind in ("utf-16", "binary")


def expected(files: list[Landed]) -> dict:
    out = {"read": 0, "line_too_long": 0, "bad_encoding": 0}
    for f in files:
        if not f.read or f.rejected:
            continue
        lines = split_physical(f.data)
        out["read"] += len(lines)
        if lines and lines[0].startswith(BOM):
            lines[0] = lines[0][len(BOM):]
        for line in lines:
            if len(line) - line.endswith(b"\r") > LIMIT:
                out["line_too_long"] += 1
            else:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    out["bad_encoding"] += 1
    return out


# --- what lands --------------------------------------------------------------------------------------
HOSTILE = ["star*", "{a,b}", "x:y", ".x", "_x", ".", "sp ace", "ünï", "[ab]", "q?", "back\\slash",
           "pct%41", "#h", "-", "new\nline", "東京", "a\tb", "'\"", "part-00000"]
NAME_CHARS = "abcXYZ019 *?[]{},:\\.%#_-é東🙂'\"\t"
COUNTRIES = ["FR", "Genève", "東京", "🙂", "", "ÿþ"]
BAD_TEXT = ["", " ", "\t", "{nope", "[1, 2]", "null", '{"user_id": 1', "\u00e9t\u00e9"]
VALID_BOOLS = [True, False, "true", "false", 0, 1]


def sized(uid: int, size: int) -> str:
    """A valid users line of exactly `size` characters (ASCII padding)."""
    row = json.dumps(user(uid, country=""))
    return row.replace('"country": ""', '"country": "' + "x" * max(0, size - len(row)) + '"')


line_text = st.one_of(
    st.builds(lambda uid, private, country: json.dumps(user(uid, is_private=private, country=country),
                                                      ensure_ascii=False),
              st.integers(1, 6), st.sampled_from(VALID_BOOLS), st.sampled_from(COUNTRIES)),
    st.sampled_from(BAD_TEXT),
    st.builds(lambda uid: json.dumps(user(uid, is_private="yes")), st.integers(1, 6)),
    st.builds(sized, st.integers(1, 6), st.integers(LIMIT - 3, LIMIT + 3) | st.integers(LIMIT, 4 * LIMIT)),
)


@st.composite
def landed_file(draw) -> Landed:
    stem = draw(st.sampled_from(HOSTILE) | st.text(NAME_CHARS, min_size=1, max_size=6))
    suffix = draw(st.sampled_from([".jsonl", ".jsonl", ".jsonl", ".jsonl.gz", ".JSONL", ".txt"]))
    kind = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "binary"]))
    if kind == "binary":
        return Landed(stem + suffix, b"\x00\x01" + draw(st.binary(max_size=40)), kind)
    ending = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    lines = draw(st.lists(line_text, max_size=10))
    final = draw(st.booleans())
    text = ending.join(lines) + (ending if final and lines else "")
    return Landed(stem + suffix, text.encode(kind, errors="replace"), kind)


def land_all(root: Path, files: list[Landed]) -> tuple[Path, Path, Path]:
    landing, lake_dir = root / "landing", root / "lake"
    folder = landing / "users" / DAY
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).write_bytes(f.stored)
    return landing, lake_dir, folder


EVERY_HOSTILE_NAME = [
    Landed(stem + (".jsonl.gz" if i % 3 == 0 else ".jsonl"), (json.dumps(user(i + 1)) + "\n").encode(), "utf-8")
    for i, stem in enumerate(HOSTILE)
] + [
    Landed("bom.jsonl", BOM, "utf-8-sig"),  # the mark alone: one blank line
    Landed("latin.jsonl", "\r\n".join([json.dumps(user(1, country="Genève"), ensure_ascii=False), "",
                                       sized(2, LIMIT + 1) + "\r"]).encode("latin-1"), "latin-1"),
    Landed("old-mac.jsonl", "\r".join([json.dumps(user(3))] * 3).encode(), "utf-8"),
    Landed("wide.jsonl", json.dumps(user(4)).encode("utf-16"), "utf-16"),
    Landed("blob.jsonl.gz", b"\x00\x01\x02", "binary"),
    Landed("notes.txt", b"hello\n", "utf-8"),
]


@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(files=st.lists(landed_file(), min_size=1, max_size=5, unique_by=lambda f: f.name))
@example(files=EVERY_HOSTILE_NAME)
def test_every_physical_line_is_read_and_accounted_for(spark, files):
    with tempfile.TemporaryDirectory() as tmp:
        landing, lake_dir, folder = land_all(Path(tmp), files)

        report = ingest_partition(spark, "users", DAY, landing, lake_dir, config=IngestConfig(max_line_bytes=LIMIT))

        want = expected(files)
        assert report.rows_read == want["read"]
        assert report.rows_read == report.rows_landed + report.rows_quarantined + report.duplicates_dropped
        assert lake_row_count(report.lake_path) == report.rows_landed
        assert lake_row_count(report.quarantine_path) == report.rows_quarantined + len(report.files_rejected)
        for reason in ("line_too_long", "bad_encoding"):
            assert report.quarantined_by_reason.get(reason, 0) == want[reason], reason
        assert set(report.files) == {str(folder / f.name) for f in files if f.read and not f.rejected}
        assert set(report.files_ignored) == {str(folder / f.name) for f in files if not f.read}
        assert set(report.files_rejected) == {str(folder / f.name) for f in files if f.rejected}
        assert report.reconciles == all(f.read and not f.rejected for f in files)
        assert not scratch_dir(lake_dir, "users", DAY).exists()  # Loupe's scratch copies are gone
        assert {f.name: f.stored for f in files} == {p.name: p.read_bytes() for p in folder.iterdir()}


# --- the reader alone, with read buffers of a few bytes ------------------------------------------------
PIECES = [b"\n", b"\r", b"\r\n", b"a", b"{}", b"\xe9", b"\xc3\xa9", b"\xc3", BOM, b"x" * 7, b"y" * 13]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=30), limit=st.integers(1, 12),
       chunk=st.integers(1, 9), head=st.integers(4, 9), gz=st.booleans())
def test_the_reader_counts_and_splits_lines_whatever_its_buffer_sizes(pieces, limit, chunk, head, gz):
    data = b"".join(pieces)
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(landing_read, "CHUNK_BYTES", chunk), mock.patch.object(landing_read, "HEAD_BYTES", head):
        folder = Path(tmp) / "landing" / "users" / DAY
        folder.mkdir(parents=True)
        name = "f.jsonl.gz" if gz else ".f.jsonl"  # a hidden name: always copied, so the copy is checked
        (folder / name).write_bytes(gzip.compress(data) if gz else data)
        day = landing_read.read_day(folder, Path(tmp) / "landing", Path(tmp) / "scratch", limit)

        lines = split_physical(data)
        assert day.lines == {str(folder / name): len(lines)}
        if lines and lines[0].startswith(BOM):
            lines[0] = lines[0][len(BOM):]
        too_long = [ln for ln in lines if len(ln) - ln.endswith(b"\r") > limit]
        bad = [ln for ln in lines if ln not in too_long and not _utf8(ln)]
        assert day.quarantined_by_reason == {k: v for k, v in
                                             {"line_too_long": len(too_long), "bad_encoding": len(bad)}.items() if v}
        kept = [ln for ln in lines if ln not in too_long and ln not in bad]
        sources = day.spark_sources
        if not gz or sources[0].spark_path != str(folder / name):  # copied: exactly the kept lines
            assert Path(sources[0].spark_path).read_bytes() == b"".join(ln + b"\n" for ln in kept)
        else:  # read by Spark as it is: only when nothing had to be taken out
            assert kept == lines and not data.startswith(BOM)


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
