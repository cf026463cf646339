"""POST /v1/events through the real HTTP app onto a durable Valkey stream: the rules are ingestion's
own (what the endpoint accepts, ingestion lands; what it rejects, ingestion quarantines with the same
reason), an event_id is appended once, every event of a batch is accounted for, and a stream that is
down or absent gets 503 with the reason, never a lost event."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial

import pytest

from data.ingest.partition import ingest_partition
from data.redis_server import EmbeddedRedis
from data.stream.archiver import StreamArchiver
from data.stream.valkey_stream import ValkeyStream
from data.vocabulary import load_vocabulary
from serving.config import EventsConfig
from serving.event_intake import EventIntake
from tests.builders import DAY, PREV_DAY, engagement, post, user, write_jsonl
from tests.serving.helpers import build_app, serving_config
from tests.serving.test_service_http import no_registry

pytestmark = pytest.mark.integration

NOW = 1_791_028_800_000  # 2026-10-03T12:00Z: the service clock's day is DAY

# Lines every rule of the line (data/ingest/line_rules.py) rejects, with the reason; references are
# ingestion's to judge (it needs the lake), so an unknown post is accepted here and quarantined there.
BAD = [
    ({"event_id": "b1", "viewer_id": 1}, "missing_required:post_id"),
    (engagement("b2", viewer=4.5), "bad_type:viewer_id"),
    (engagement("b3", post_id=True), "bad_type:post_id"),
    (engagement("b4", value="long"), "bad_type:value"),
    (engagement("b5", ts="yesterday"), "bad_type:ts"),
    (engagement("b6", type="superlike"), "bad_enum:type"),
    (engagement("b7", surface="reels"), "bad_enum:surface"),
    (engagement("b8", ts="2026-10-09T00:00:00.000Z"), "ts_in_future"),
    (engagement("b9", ts="2026-09-01T00:00:00.000Z"), "ts_too_old"),
    ([1, 2, 3], "malformed_json"),
]
GOOD = [engagement("g1"), engagement("g2", viewer="U-abc", type="dwell", value="4200"),
        engagement("g3", post_id=999)]  # an unknown post: ingestion's unknown_reference


@pytest.fixture
def stream_server(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as s:
        yield s


def app_with_events(redis_server, stream_url: str):
    import redis

    cfg = serving_config()
    app = build_app(redis.Redis.from_url(redis_server.url), cfg, no_registry(cfg), now_ms=NOW)
    app.intake = EventIntake(partial(ValkeyStream.connect, stream_url, 2, timeout_s=2.0), load_vocabulary(),
                             app.clock, EventsConfig())
    return app


def test_the_endpoint_accepts_what_ingestion_lands_and_rejects_with_its_reasons(
        spark, redis_server, stream_server, http_for, tmp_path):
    http = http_for(app_with_events(redis_server, stream_server.url))
    batch = [row for row, _ in BAD[:5]] + GOOD + [row for row, _ in BAD[5:]]

    r = http.post("/v1/events", json={"events": batch})

    assert r.status_code == 422, r.text
    body = r.json()
    assert body["accepted"] == len(GOOD) and body["duplicates"] == 0
    expected = {i: reason for i, (row, reason) in enumerate(BAD[:5])}
    expected |= {len(GOOD) + i: reason for i, (row, reason) in enumerate(BAD) if i >= 5}
    assert {x["index"]: x["reason"] for x in body["rejected"]} == expected
    assert {x["event_id"] for x in body["rejected"]} >= {"b2", "b9"}

    again = http.post("/v1/events", json={"events": GOOD})  # a client retrying: nothing twice
    assert again.status_code == 200 and again.json() == {"accepted": 0, "duplicates": 3, "rejected": [], "error": None}

    # The stream lands; ingestion judges the accepted lines and the rejected ones alike.
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    StreamArchiver(ValkeyStream.connect(stream_server.url, 2), landing, clock_ms=lambda: NOW).archive()
    write_jsonl(landing, "engagements", DAY, [row for row, _ in BAD], name="rejected.jsonl")
    for day in (PREV_DAY, DAY):
        write_jsonl(landing, "users", day, [user(1), user(2), user("U-abc")] if day == PREV_DAY else [])
        write_jsonl(landing, "posts", day, [post(100, 2)] if day == PREV_DAY else [])
        for log in ("users", "posts"):
            ingest_partition(spark, log, day, landing, lake_dir)
    report = ingest_partition(spark, "engagements", DAY, landing, lake_dir)

    assert report.rows_landed == 2 and report.duplicates_dropped == 0 and report.reconciles
    assert report.quarantined_by_reason == dict(Counter(reason for _, reason in BAD)) | {
        "unknown_reference:post_id": 1}


def test_a_stream_down_or_absent_gets_503_and_the_retry_appends_each_event_once(
        redis_server, stream_server, http_for, tmp_path):
    app = app_with_events(redis_server, stream_server.url)
    http = http_for(app)
    assert http.post("/v1/events", json={"events": GOOD[:1]}).json()["accepted"] == 1

    stream_server.kill()
    down = http.post("/v1/events", json={"events": GOOD})
    assert down.status_code == 503 and "retry the batch" in down.json()["error"]
    assert down.headers["retry-after"] == "1"

    stream_server.start()  # from its append-only file, on the port the service knows
    back = http.post("/v1/events", json={"events": GOOD})
    assert back.status_code == 200 and back.json() == {"accepted": 2, "duplicates": 1, "rejected": [], "error": None}
    stream = ValkeyStream.connect(stream_server.url, 2)
    lines = [json.loads(e.line)["event_id"] for p in range(2) for e in stream.after(p, "0-0", 100)]
    assert sorted(lines) == ["g1", "g2", "g3"]

    app.intake = None  # a service started without LOUPE_STREAM_URL
    absent = http.post("/v1/events", json={"events": GOOD})
    assert absent.status_code == 503 and "without an event stream" in absent.text


def test_events_need_the_token_and_a_batch_within_the_limit(redis_server, stream_server, http_for):
    app = app_with_events(redis_server, stream_server.url)
    http = http_for(app)
    too_many = [engagement(f"e{i}") for i in range(EventsConfig().max_batch + 1)]
    r = http.post("/v1/events", json={"events": too_many})
    assert r.status_code == 400 and "at most 500" in r.text
    assert http.post("/v1/events", json={"events": []}).status_code == 400
    token = http.headers.pop("authorization")
    try:
        assert http.post("/v1/events", json={"events": GOOD}).status_code == 401
    finally:
        http.headers["authorization"] = token
