"""Ids a team exports as strings ("U123", UUIDs) become the int64 ids Loupe stores, the same way
everywhere: ingestion (Spark), pandas code, and a caller of the ranking service.

The rule, applied to the id's text (a JSON integer and a JSON string are read alike):
    canonical int64 decimal ("42", "-7": no sign "+", no leading zeros, no spaces)  -> that integer
    a value no id can be (empty/blank, true/false, a fractional number such as 4.5 or 1.0E5, or
    text starting with { or [: a JSON boolean, float or object read as text)      -> rejected
    any other text ("U123", "0042", a UUID, an integer beyond int64)                  -> hashed:
        2**62 | (first 8 bytes of SHA-256(UTF-8 text), big-endian, low 62 bits)

Hashed ids lie in [2**62, 2**63), so they never equal a native id below 2**62; SHA-256: a standard
digest any language a team maps ids in has. Two strings can still meet on one id
(about n**2 / 2**63 for n strings) and so can a native id >= 2**62: ingestion records every id in
that range with its text (`data.id_map`) and a blocking check fails on any id with two texts.

CLI, for a caller of the ranking service (which takes int64 ids):
    python -m data.ids U123 P7                 # prints "<text>\\t<id>" per argument
    python -m data.ids --lake <lake> --reverse 5083475738428411635   # the texts an id came from
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Iterable
from pathlib import Path

HASHED_BASE = 1 << 62  # every hashed id is >= this; native ids below it cannot collide with one
_LOW_62 = HASHED_BASE - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# Texts that are never an id: blank, a JSON boolean, a fractional number (4.5, 1.0E5), or a JSON
# object/array read as text (a caller may hand any of them over as a string).
_NOT_AN_ID = r"[ \t\r\n]*|true|false|-?[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[\[{][\s\S]*"
_NOT_AN_ID_RE = re.compile(_NOT_AN_ID)


class BadId(ValueError):
    """A value that cannot be an id (see the module docstring)."""


def _hash(text: str) -> int:
    # "replace": a lone surrogate becomes "?", as the JVM encodes it, so Spark and Python agree.
    digest = hashlib.sha256(text.encode("utf-8", "replace")).digest()
    return HASHED_BASE | (int.from_bytes(digest[:8], "big") & _LOW_62)


def _canonical_int(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    # The round trip rejects what int() tolerates but is not canonical: "+4", " 4", "04", "4_0", "-0".
    return value if str(value) == text and INT64_MIN <= value <= INT64_MAX else None


def to_id(value: int | str) -> int:
    """The int64 id of one exported id (a JSON integer or string); BadId if it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadId(f"an id is an integer or a string, not {type(value).__name__} {value!r}")
    text = str(value)
    native = _canonical_int(text)
    if native is not None:
        return native
    if _NOT_AN_ID_RE.fullmatch(text):
        raise BadId(f"{value!r} is not an id (blank, a boolean, a fractional number or JSON)")
    return _hash(text)


def to_ids(values: Iterable[int | str]) -> list[int]:
    """`to_id` of each value (a pandas Series works: `series.map(to_id)` is the same)."""
    return [to_id(v) for v in values]


def is_mapped(identifier: int) -> bool:
    """Whether an id lies in the hashed range, where ingestion records its text (lake/id_map)."""
    return identifier >= HASHED_BASE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.ids", description=__doc__.split("\n\n")[0])
    parser.add_argument("values", nargs="*", help="exported ids (text); '-' reads one per line from stdin")
    parser.add_argument("--reverse", action="store_true", help="values are int64 ids: print their texts")
    parser.add_argument("--lake", type=Path, help="the lake folder (for --reverse)")
    args = parser.parse_args(argv)
    values = args.values
    if values == ["-"]:
        values = [line.rstrip("\n") for line in sys.stdin]
    if args.reverse:
        if args.lake is None:
            parser.error("--reverse needs --lake <lake folder>")
        from data.id_map import lookup  # pyarrow and pandas: only the reverse lookup needs them

        try:
            found = lookup(args.lake, [int(v) for v in values])
        except ValueError as exc:
            parser.error(f"--reverse takes int64 ids: {exc}")
        for identifier, sources in found.items():
            texts = sorted({s["original"] for s in sources})
            print(f"{identifier}\t{' | '.join(texts) if texts else '(not a mapped id in this lake)'}")
        return 0
    status = 0
    for value in values:
        try:
            print(f"{value}\t{to_id(value)}")
        except BadId as exc:
            print(f"{value}\terror: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
