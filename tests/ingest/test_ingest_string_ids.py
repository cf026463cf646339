"""A team's export as it comes: string ids, clicks and views, its own vocabulary, dates in 2019.
Real Spark, hand-built landing rows."""

from __future__ import annotations

import json
import random
import string
import uuid
from pathlib import Path

import pytest

from data import columns as c
from data import id_map
from data.contracts import ENGAGEMENTS, LOG_TYPES
from data.ids import BadId, to_id
from data.ingest.partition import ingest_partition
from data.ingest.validation import LandingLines, parse_lines
from data.vocabulary import Vocabulary, load_vocabulary
from tests.builders import engagement, follow, impression, post, user, write_jsonl

D1, D2 = "2019-03-04", "2019-03-05"


def at(day: str, hour: int) -> str:
    return f"{day}T{hour:02d}:00:00.000Z"


def eng(eid: str, kind: str, **over) -> dict:
    row = dict(viewer="U1", post_id="P-a", author_id="U2", type=kind, ts=at(D2, 10), request_id="r1")
    return engagement(eid, **{**row, **over})


@pytest.fixture
def team(tmp_path: Path):
    """Users U1, U2 and 7 (a native integer id), posts by them, follows, and day-2 events."""
    landing = tmp_path / "landing"
    write_jsonl(landing, "users", D1, [user("U1", at(D1, 1)), user("U2", at(D1, 1)), user(7, at(D1, 1))])
    write_jsonl(landing, "posts", D1, [post("P-a", "U2", at(D1, 2)), post("P-b", 7, at(D1, 2))])
    write_jsonl(landing, "follows", D1, [follow("U1", "U2", at(D1, 3)), follow("U1", "7", at(D1, 3))])
    write_jsonl(landing, "engagements", D2, [
        eng("e1", "click"), eng("e2", "view"), eng("e3", "like", post_id="P-b", author_id=7),
        eng("e4", "superlike"),
    ])
    write_jsonl(landing, "impressions", D2, [
        impression("r1", "U1", "P-a", at(D2, 9), source="other", propensity=0.25),
        impression("r1", "U1", "P-b", at(D2, 9), position=1, source="in_network"),
    ])
    for log in LOG_TYPES:  # the rest of each day: empty folders, as an export with nothing to say
        for day in (D1, D2):
            if not (landing / log / day).exists():
                write_jsonl(landing, log, day, [])
    return landing, tmp_path / "lake"


def ingest_all(spark, landing: Path, lake_dir: Path, vocabulary: Vocabulary | None = None) -> dict:
    return {(log, day): ingest_partition(spark, log, day, landing, lake_dir, vocabulary)
            for day in (D1, D2) for log in LOG_TYPES}


def column(spark, lake_dir: Path, log: str, name: str) -> list:
    return [r[0] for r in spark.read.parquet(str(lake_dir / log)).select(name).collect()]


def test_string_ids_land_as_one_int64_in_every_log_and_joins_match(spark, team):
    landing, lake_dir = team
    reports = ingest_all(spark, landing, lake_dir)

    assert all(r.reconciles for r in reports.values())
    u1, u2 = to_id("U1"), to_id("U2")
    assert sorted(column(spark, lake_dir, "users", c.USER_ID)) == sorted([u1, u2, 7])
    assert sorted(column(spark, lake_dir, "follows", c.FOLLOWEE_ID)) == sorted([u2, 7])  # "7" is 7
    assert set(column(spark, lake_dir, "follows", c.FOLLOWER_ID)) == {u1}
    users = spark.read.parquet(str(lake_dir / "users"))
    posts = spark.read.parquet(str(lake_dir / "posts"))
    for log in ("engagements", "impressions"):
        events = spark.read.parquet(str(lake_dir / log))
        assert events.count() > 0
        # every event's viewer is a user's id and its post a post's id: the joins still match
        assert events.join(users, events.viewer_id == users.user_id, "left_anti").count() == 0
        assert events.join(posts, "post_id", "left_anti").count() == 0
    by_post = {r.post_id: r.author_id for r in posts.collect()}
    for r in spark.read.parquet(str(lake_dir / "engagements")).collect():
        assert r.author_id == by_post[r.post_id]  # the copied author is the post's author
    served = {r.post_id: r.propensity for r in spark.read.parquet(str(lake_dir / "impressions")).collect()}
    assert served == {to_id("P-a"): 0.25, to_id("P-b"): None}

    # the id map keeps each hashed id's text, per log and column; native 7 is its own text
    mapped = id_map.lookup(lake_dir, [u1, u2, to_id("P-a"), 7])
    assert {(s["log_type"], s["column"]) for s in mapped[u1]} == {
        ("users", "user_id"), ("follows", "follower_id"), ("engagements", "viewer_id"),
        ("impressions", "viewer_id")}
    assert {s["original"] for ids in mapped.values() for s in ids} == {"U1", "U2", "P-a"}
    assert mapped[7] == []
    assert all(id_map.collisions(lake_dir, log, day) == [] for log, day in reports)


def test_click_and_view_land_and_an_unknown_type_is_quarantined_naming_it(spark, team):
    landing, lake_dir = team
    report = ingest_all(spark, landing, lake_dir)[("engagements", D2)]

    assert sorted(column(spark, lake_dir, "engagements", c.TYPE)) == ["click", "like", "view"]
    assert report.quarantined_by_reason == {"bad_enum:type": 1}
    assert report.unknown_enum_values == {"type": {"superlike": 1}}
    assert report.reconciles


def test_a_team_vocabulary_adds_its_own_type_and_source(spark, team, tmp_path):
    landing, lake_dir = team
    shipped = load_vocabulary()
    text = Path(shipped.source).read_text()
    text = text.replace("[engagement_types]\n", '[engagement_types]\nupvote = { role = "positive", head = "upvote" }\n')
    text = text.replace('"exploration", "other",', '"exploration", "other", "feed_v2",')
    path = tmp_path / "vocabulary.toml"
    path.write_text(text)
    write_jsonl(landing, "engagements", D2, [eng("e1", "upvote"), eng("e2", "click")])
    write_jsonl(landing, "impressions", D2, [impression("r1", "U1", "P-a", at(D2, 9), source="feed_v2")])

    before = ingest_all(spark, landing, lake_dir, shipped)
    assert before[("engagements", D2)].unknown_enum_values == {"type": {"upvote": 1}}
    assert before[("impressions", D2)].unknown_enum_values == {"source": {"feed_v2": 1}}

    after = ingest_all(spark, landing, lake_dir, Vocabulary.load(path))
    assert (after[("engagements", D2)].rows_landed, after[("engagements", D2)].rows_quarantined) == (2, 0)
    assert after[("impressions", D2)].rows_landed == 1
    assert sorted(column(spark, lake_dir, "engagements", c.TYPE)) == ["click", "upvote"]


def test_dates_are_judged_against_the_landing_day_not_a_calendar(spark, team):
    landing, lake_dir = team
    write_jsonl(landing, "engagements", D2, [
        eng("in-window", "click", ts="2019-02-26T00:00:00.000Z"),  # 7 days before D2: still believed
        eng("too-old", "click", ts="2019-02-25T23:59:59.000Z"),
        eng("future", "click", ts="2019-03-06T01:00:01.000Z"),
    ])
    report = ingest_all(spark, landing, lake_dir)[("engagements", D2)]

    assert column(spark, lake_dir, "engagements", c.EVENT_ID) == ["in-window"]
    assert report.quarantined_by_reason == {"ts_too_old": 1, "ts_in_future": 1}


def test_a_string_and_a_native_id_on_one_int64_are_a_collision_even_when_deduplicated(spark, team):
    """A native id equal to U1's hash, with U1's key: dropped as U1's duplicate, still found."""
    landing, lake_dir = team
    twin = to_id("U1")
    write_jsonl(landing, "users", D1, [user("U1", at(D1, 1)), user(twin, at(D1, 1)), user("U2", at(D1, 1))])
    report = ingest_partition(spark, "users", D1, landing, lake_dir)

    assert report.duplicates_dropped == 1 and report.reconciles
    found = id_map.collisions(lake_dir, "users", D1)
    assert [(f["entity"], f["id"], f["originals"]) for f in found] == [("users", twin, sorted(["U1", str(twin)]))]


def some_ids(n: int, seed: int = 7) -> list[str]:
    """Texts of every kind a team's ids come in, and the edge cases of the scheme."""
    rng = random.Random(seed)
    edge = ["42", "-7", "0", "-0", "0042", " 42", "+42", "4.5", "1e5", "true", "", " ", "U123", "é", "😀",
            "9223372036854775807", "9223372036854775808", "-9223372036854775808", "a\"b\\c", "tab\there",
            "nul\u0000byte", "{not json", "[x]"]
    ids = edge + [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
    ids += ["".join(rng.choice(string.printable) for _ in range(rng.randint(1, 24))) for _ in range(n)]
    ids += ["".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 8))) for _ in range(n)]
    ids += [str(rng.randint(-(2**63), 2**63 - 1)) for _ in range(n)]
    return ids


def python_id(text: str) -> int | None:
    try:
        return to_id(text)
    except BadId:
        return None


def test_ids_read_from_json_lines_map_as_in_python(spark):
    """Through the landing path: JSON escapes, numbers vs strings, then the contract's parse."""
    texts = some_ids(300, seed=11)
    rows = [eng(f"e{i}", "click", viewer=t) for i, t in enumerate(texts)]
    rows += [eng("n1", "click", viewer=42), eng("n2", "click", viewer=4.5), eng("n3", "click", viewer=False)]
    lines = LandingLines.of_file(spark.createDataFrame([(json.dumps(r),) for r in rows], "value string"), "f", D2)

    # a failed line keeps only its raw text (its typed columns are null): find it by its event_id there
    parsed = {json.loads(r.raw_line)["event_id"]: (r.viewer_id, r.reason)
              for r in parse_lines(lines, ENGAGEMENTS).collect()}

    for i, t in enumerate(texts):
        expected = python_id(t)
        assert parsed[f"e{i}"] == (expected, None if expected is not None else "bad_type:viewer_id"), t
    assert parsed["n1"] == (42, None)
    assert parsed["n2"] == parsed["n3"] == (None, "bad_type:viewer_id")
