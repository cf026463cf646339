"""String ids -> int64: canonical integers are themselves, other text hashes into [2**62, 2**63),
values no id can be are refused; the lake's id map finds collisions; the CLI maps both ways."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import columns as c
from data import id_map
from data.ids import HASHED_BASE, BadId, main, to_id, to_ids


def sha_id(text: str) -> int:
    """The documented scheme, written out independently of data.ids."""
    top = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return (1 << 62) | (top & ((1 << 62) - 1))


@pytest.mark.parametrize("value, expected", [
    (42, 42), ("42", 42), (-7, -7), ("-7", -7), (0, 0), ("0", 0),
    ("9223372036854775807", 2**63 - 1), (-(2**63), -(2**63)),
])
def test_a_canonical_integer_is_its_own_id(value, expected):
    assert to_id(value) == expected


@pytest.mark.parametrize("text", [
    "U123", "0042", "-0", " 42", "+42", "1e5", "٤٢", "😀", "a\nb",
    "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "9223372036854775808", "-9223372036854775809",
])
def test_other_text_is_hashed_into_the_upper_range(text):
    got = to_id(text)
    assert got == sha_id(text)
    assert HASHED_BASE <= got < 2**63
    assert to_id(text) == got  # deterministic, no per-process salt


def test_the_scheme_is_pinned():
    # A change here remaps every team's ids: it must be deliberate (and documented).
    assert to_id("U123") == 7252789003048580851
    assert to_ids(["U123", 5, "5"]) == [7252789003048580851, 5, 5]


def test_an_integer_beyond_int64_is_text_not_an_overflow():
    assert to_id(2**64) == sha_id(str(2**64))


@pytest.mark.parametrize("value", ["", "  ", "true", "false", "4.5", "-1.0E5", "42.0", "{\"a\":1}", "[1]",
                                   True, 4.5, None, b"U1"])
def test_a_value_no_id_can_be_is_refused(value):
    with pytest.raises(BadId):
        to_id(value)


def write_map(lake_dir: Path, log: str, day: str, rows: list[tuple[str, str, str, int]]) -> None:
    folder = id_map.partition_dir(lake_dir, log, day)
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(
        [{c.ENTITY: e, c.LOG_TYPE: log, c.ID_COLUMN: col, c.ORIGINAL_ID: o, c.ID: i} for e, col, o, i in rows],
        schema=id_map.SCHEMA,
    )
    pq.write_table(table, folder / "part-00000.parquet")


def test_collisions_are_found_across_logs_and_days_within_an_entity(tmp_path):
    """Two texts on one user id (a forced SHA collision cannot be built: write the map by hand)."""
    shared = HASHED_BASE + 7
    write_map(tmp_path, "users", "2019-03-04", [("users", "user_id", "U1", shared),
                                                ("users", "user_id", "U2", to_id("U2"))])
    write_map(tmp_path, "engagements", "2019-03-05", [("users", "viewer_id", "X9", shared),
                                                      ("posts", "post_id", "P1", to_id("U2"))])

    found = id_map.collisions(tmp_path, "engagements", "2019-03-05")

    assert [(f["entity"], f["id"], f["originals"]) for f in found] == [("users", shared, ["U1", "X9"])]
    assert found[0]["seen_in"] == ["engagements.viewer_id dt=2019-03-05: X9", "users.user_id dt=2019-03-04: U1"]
    # the same partition seen from the users side; a post id equal to a user id is no collision
    assert [f["id"] for f in id_map.collisions(tmp_path, "users", "2019-03-04")] == [shared]
    assert id_map.collisions(tmp_path, "posts", "2019-03-05") == []


def test_lookup_maps_ids_back_to_their_texts(tmp_path):
    write_map(tmp_path, "users", "2019-03-04", [("users", "user_id", "U1", to_id("U1"))])
    write_map(tmp_path, "follows", "2019-03-04", [("users", "follower_id", "U1", to_id("U1"))])

    got = id_map.lookup(tmp_path, [to_id("U1"), 12])

    assert sorted((s["original"], s["log_type"], s["column"], s["dt"]) for s in got[to_id("U1")]) == [
        ("U1", "follows", "follower_id", "2019-03-04"), ("U1", "users", "user_id", "2019-03-04")]
    assert got[12] == []


def test_the_cli_maps_both_ways(tmp_path, capsys):
    write_map(tmp_path, "users", "2019-03-04", [("users", "user_id", "U1", to_id("U1"))])

    assert main(["U1", "42"]) == 0
    assert capsys.readouterr().out == f"U1\t{to_id('U1')}\n42\t42\n"
    assert main(["--lake", str(tmp_path), "--reverse", str(to_id("U1"))]) == 0
    assert capsys.readouterr().out == f"{to_id('U1')}\tU1\n"
    assert main(["4.5"]) == 1
    assert "not an id" in capsys.readouterr().err
