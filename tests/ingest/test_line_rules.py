"""The line rules every producer shares (data/ingest/line_rules.py), over generated lines: any line
of any log gets a verdict (never an exception that would stop an ingestion or a request), a valid
line's values have its column's type, and Spark's ingestion gives each line the verdict the plain
function gives it."""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.contracts import CONTRACTS, ENGAGEMENTS
from data.ingest.line_rules import MALFORMED, LineRules, check_batch
from data.vocabulary import load_vocabulary
from tests.builders import DAY, engagement, impression, post, user

ROWS = {"users": user(1), "posts": post(100, 2), "engagements": engagement("e1"),
        "impressions": impression("r1", 1, 100, f"{DAY}T09:00:00.000Z", features=[0.5, 1]),
        "follows": {"follower_id": 1, "followee_id": 2, "action": "follow", "ts": f"{DAY}T08:00:00Z"},
        "blocks": {"blocker_id": 1, "blocked_id": 2, "action": "block", "ts": f"{DAY}T08:00:00Z"}}
REASONS = ("malformed_json", "missing_required:", "bad_type:", "bad_enum:", "ts_in_future", "ts_too_old")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["2026-10-03T08:00:00Z", "2026-10-03 08:00", "2026-02-30T00:00:00Z", "\ud800x",
                       "9223372036854775808", "like", "home", "0", "true", "1e3", "-0", "U-1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4)


@st.composite
def lines(draw) -> tuple[str, str]:
    log = draw(st.sampled_from(sorted(ROWS)))
    row = dict(ROWS[log])
    for name in draw(st.lists(st.sampled_from(CONTRACTS[log].column_names), max_size=3)):
        if draw(st.booleans()):
            row[name] = draw(json_values)
        else:
            row.pop(name, None)
    line = json.dumps(row) if draw(st.integers(0, 9)) else draw(st.text(max_size=20))
    return log, line


def _of_type(value, arrow_type: pa.DataType) -> bool:
    if pa.types.is_list(arrow_type):
        return isinstance(value, list) and all(v is None or _of_type(v, arrow_type.value_type) for v in value)
    if pa.types.is_string(arrow_type):
        return isinstance(value, str)
    if pa.types.is_boolean(arrow_type):
        return isinstance(value, bool)
    if pa.types.is_floating(arrow_type):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)  # ids, int32, timestamps (µs)


@pytest.mark.unit
@settings(max_examples=400, deadline=None)
@given(st.lists(lines(), min_size=1, max_size=8))
def test_every_line_gets_a_verdict_and_valid_values_have_their_types(batch):
    vocabulary = load_vocabulary()
    for log in {log for log, _ in batch}:
        rules = LineRules(CONTRACTS[log], vocabulary)
        texts = [line for line_log, line in batch if line_log == log]
        arrow = check_batch(rules, texts, [DAY] * len(texts))  # builds its Arrow columns: no exception
        assert arrow.num_rows == len(texts)
        for text in texts:
            checked = rules.check(text, DAY)
            if checked.reason is not None:
                assert checked.reason.startswith(REASONS) and checked.values is None
                continue
            for value, field in zip(checked.values, CONTRACTS[log].schema, strict=True):
                assert value is None or _of_type(value, field.type), (field.name, value)
            assert all(value is not None for value, name in zip(checked.values, CONTRACTS[log].column_names,
                                                                 strict=True) if name in CONTRACTS[log].required)


def _verdict_of_json(rules: LineRules, line: str):
    """The verdict on the line as the standard library reads it: what orjson's speed may not change."""
    try:
        row = json.loads(line)
    except ValueError:
        return MALFORMED
    return rules.check_object(row, DAY) if isinstance(row, dict) else MALFORMED


@pytest.mark.unit
@settings(max_examples=400, deadline=None)
@given(lines())
def test_a_line_gets_the_verdict_of_the_standard_json_reader(log_line):
    log, line = log_line
    rules = LineRules(CONTRACTS[log], load_vocabulary())
    assert rules.check(line, DAY) == _verdict_of_json(rules, line)


@pytest.mark.unit
@pytest.mark.parametrize("value", [10**30, -(10**30), 2**64, -(2**63) - 1, 2**64 - 1])
def test_an_integer_beyond_64_bits_is_read_exactly(value):
    """orjson reads these as floats; json keeps them exact, so a text column keeps their digits and an
    id column hashes their text."""
    rules = LineRules(CONTRACTS["impressions"], load_vocabulary())
    for column in ("request_id", "viewer_id", "model_version", "score", "features", "position"):
        row = {**impression("r1", 1, 100, f"{DAY}T09:00:00.000Z"), column: [value] if column == "features" else value}
        line = json.dumps(row)
        assert rules.check(line, DAY) == _verdict_of_json(rules, line), column
    text = rules.check(json.dumps(impression(value, 1, 100, f"{DAY}T09:00:00.000Z")), DAY)  # request_id
    assert text.values[0] == str(value)


@pytest.mark.spark
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines(), min_size=20, max_size=60))
def test_spark_ingestion_gives_each_line_the_verdict_of_the_plain_rules(spark, batch):
    from data.ingest.validation import LandingLines, parse_lines

    texts = [line for log, line in batch if log == "engagements"] + [json.dumps(engagement("ok"))]
    lines = LandingLines.of_file(spark.createDataFrame([(t,) for t in texts], "value string"), "f", DAY)
    rules = LineRules(ENGAGEMENTS, load_vocabulary())

    got = sorted((r.raw_line, r.reason) for r in parse_lines(lines, ENGAGEMENTS).collect())

    assert got == sorted((t, rules.check(t, DAY).reason) for t in texts)


@pytest.mark.unit
def test_a_feature_vector_takes_what_a_float32_holds():
    rules, day = LineRules(CONTRACTS["impressions"], load_vocabulary()), DAY
    line = partial(impression, "r1", 1, 100, f"{DAY}T09:00:00.000Z")
    assert rules.check(json.dumps(line(features=[1791110300, 0.5, None])), day).values is not None
    for bad in ([1e39], [10**400], ["0.1"], [True], [math.inf]):
        assert rules.check(json.dumps(line(features=bad)), day).reason == "bad_type:features", bad
    batch = check_batch(rules, [json.dumps(line(features=[1791110300, 2]))], [day])  # Arrow takes it
    assert batch.column("features").to_pylist() == [[float(np.float32(1791110300)), 2.0]]  # float32 precision


@pytest.mark.unit
def test_an_id_text_with_a_lone_surrogate_reaches_the_id_map_as_the_jvm_writes_it():
    rules = LineRules(CONTRACTS["blocks"], load_vocabulary())
    line = '{"blocker_id": "\\ud800x", "blocked_id": 2, "action": "block", "ts": "2026-10-03T08:00:00Z"}'
    batch = check_batch(rules, [line], [DAY])  # Arrow takes it
    assert batch.column("_raw_blocker_id").to_pylist() == ["?x"]
