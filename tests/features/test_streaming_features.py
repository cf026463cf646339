"""The stream feature worker on a real event stream (embedded durable Valkey) and a real Feast repo
(the workspace's definitions applied, Redis online store on the session's Valkey):

- counts and windows equal a plain Python recomputation from what the stream holds;
- the packed view equals Feast's get_online_features for the real-time service, and the viewer's
  action sequence reads back through Feast;
- two workers in one group, each owning partitions, reach what one worker reaches;
- workers killed mid-batch (after part of a batch was applied, and after all of it was applied but
  before its rows were written) leave nothing lost and nothing counted twice once another reclaims;
- a post's row is written by its partition's owner, and by the next owner if that one dies;
- state keys expire at least STATE_TTL_S after their last change;
- the backfill (features/streaming/backfill.py) gives, through Feast's point-in-time retrieval,
  what the online store held at each time.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from feast import FeatureStore

from data import columns as c
from data.days import day_of_ms, iso_ms
from data.redis_server import EmbeddedRedis
from data.stream.entries import START, Event
from data.stream.leases import PartitionTaken
from data.stream.said import post_event
from data.stream.valkey_stream import ValkeyStream
from data.vocabulary import load_vocabulary
from features.online import PackedFeatureReader
from features.online.parity import reader_vs_feast
from features.online.ranking import RankingFeatureReader
from features.retrieval import historical_features, realtime_values_since
from features.services import SERVICE_V2
from features.store import apply, repo_config
from features.streaming import spec
from features.streaming.backfill import backfill_days, registry_lake, view_rows, write_view_rows
from features.streaming.rows import EngagementRow, engagement_row, engagement_rules
from features.streaming.state import COUNTER_TTL_S, STATE_TTL_S
from features.streaming.warm_start import warm_start
from features.streaming.worker import GROUP, LATENESS_MS, StreamFeatureWorker
from features.tables import POST_TAGS
from features.tags import tag_vector

VOCABULARY = load_vocabulary()
TYPES = VOCABULARY.engagement_names
T0 = 1_790_000_000_000  # ms, in the simulated October
MIN, HOUR = 60_000, 3_600_000
AUTHOR_OF = {post: 1 + post % 4 for post in range(10, 22)}
DB = 11


@pytest.fixture(scope="module")
def store(redis_server, tmp_path_factory) -> FeatureStore:
    root = tmp_path_factory.mktemp("realtime")
    feature_store = FeatureStore(config=repo_config(str(root / "registry.db"), _url(redis_server)))
    apply(feature_store, root / "lake")
    return feature_store


def _url(redis_server) -> str:
    return redis_server.url.rsplit("/", 1)[0] + f"/{DB}"


@pytest.fixture
def online(redis_server, store) -> redis.Redis:
    client = redis.Redis.from_url(_url(redis_server))
    client.flushdb()
    return client


@pytest.fixture
def stream(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        yield ValkeyStream.connect(server.url, partitions=3)


def line(event_id: str, viewer: int, post: int, kind: str, ts: int, value: float | None = None) -> str:
    return json.dumps({"event_id": event_id, "viewer_id": viewer, "post_id": post, "author_id": AUTHOR_OF[post],
                       "type": kind, "value": value, "ts": iso_ms(ts), "surface": "home", "request_id": None})


def generated(n: int = 400, seed: int = 3) -> list[tuple[int, Event]]:
    """(arrival ms, event): engagements over ~30 hours, in bursts so that every window holds some,
    arriving up to 2 minutes after they happened (out of order), plus lines the worker refuses or
    ignores: malformed, an unknown type, one too late, another log's entry."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        burst = T0 + int(rng.integers(0, 30)) * HOUR
        ts = burst + int(rng.integers(0, 90 * MIN)) if k % 3 else T0 + 30 * HOUR - int(rng.integers(0, 8 * MIN))
        viewer, post = int(rng.integers(1, 13)), int(rng.integers(10, 22))  # viewers on every partition
        kind = TYPES[int(rng.integers(0, len(TYPES)))]
        value = float(rng.integers(1, 20_000)) if kind == "dwell" else None
        out.append((ts + int(rng.integers(0, 2 * MIN)), Event("engagements", line(f"e{k}", viewer, post, kind, ts,
                                                                                  value), str(viewer))))
    end = T0 + 30 * HOUR
    out += [(end, Event("engagements", "{not json", "1")),
            (end, Event("engagements", line("x1", 2, 10, "poke", end), "2")),
            (end, Event("engagements", line("x2", 3, 11, "like", end - LATENESS_MS - MIN), "3")),
            (end, Event("impressions", json.dumps({"request_id": "r", "viewer_id": 1}), "1"))]
    return sorted(out, key=lambda pair: pair[0])


def append(stream: ValkeyStream, events: list[tuple[int, Event]]) -> None:
    for at, event in events:  # one at a time, at its arrival: ids follow arrival
        stream.append([event], at_ms=at)


def recompute(stream: ValkeyStream) -> tuple[dict, dict, dict, dict]:
    """The features, straight from their definitions, over the engagements the stream holds:
    (post, author, pair, sequence), each entity -> feature -> value."""
    by_post, by_author, by_pair, by_viewer = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
    for p in range(stream.partitions):
        for entry in stream.after(p, START, 10_000):
            try:
                row = json.loads(entry.line)
            except ValueError:
                continue
            if entry.log != "engagements" or row.get("type") not in TYPES:
                continue
            ts = int(np.datetime64(row["ts"].rstrip("Z"), "ms").astype(np.int64))
            if ts < entry.ms - LATENESS_MS:
                continue
            kind = VOCABULARY.engagement_types[row["type"]]
            e = {"ts": ts, "type": row["type"], "post": row["post_id"], "author": row["author_id"],
                 "negative": kind.role == "negative",
                 "positive": kind.role != "negative" and VOCABULARY.head_of(row["type"], row["value"]) is not None}
            by_post[row["post_id"]].append(e)
            by_author[row["author_id"]].append(e)
            by_pair[(row["viewer_id"], row["author_id"])].append(e)
            by_viewer[row["viewer_id"]].append((entry.partition, entry.id, e))

    def count(events, size, width, test=lambda e: True) -> int:
        at = max(e["ts"] for e in events) // size
        return sum(1 for e in events if 0 <= at - e["ts"] // size < width and test(e))

    posts = {}
    for post, evs in by_post.items():
        f = {f"post_rt_{t}_{name}": count(evs, size, width, lambda e, t=t: e["type"] == t)
             for t in TYPES for name, size, width in (("5m", MIN, 5), ("1h", MIN, 60), ("24h", HOUR, 24))}
        for name, size, width in (("5m", MIN, 5), ("1h", MIN, 60), ("24h", HOUR, 24)):
            f[f"post_rt_engagements_{name}"] = count(evs, size, width, lambda e: e["positive"])
        f["post_rt_velocity"] = f["post_rt_engagements_5m"] / 5 - f["post_rt_engagements_1h"] / 60
        f["_last_ms"] = max(e["ts"] for e in evs)  # the as-of time (not a feature)
        posts[post] = f
    authors = {a: {"author_rt_engagements_1h": count(evs, MIN, 60, lambda e: e["positive"]),
                   "author_rt_engagements_24h": count(evs, HOUR, 24, lambda e: e["positive"]),
                   "author_rt_negatives_24h": count(evs, HOUR, 24, lambda e: e["negative"])}
               for a, evs in by_author.items()}
    day = 86_400_000
    pairs = {k: {"va_rt_positive_today": count(evs, day, 1, lambda e: e["positive"]),
                 "va_rt_negative_today": count(evs, day, 1, lambda e: e["negative"]),
                 "va_rt_engagements_today": count(evs, day, 1)} for k, evs in by_pair.items()}
    sequences = {}
    for viewer, items in by_viewer.items():  # one partition per viewer: its entry order
        newest = [e for _, _, e in sorted(items, key=lambda x: tuple(map(int, x[1].split("-"))), reverse=True)]
        sequences[viewer] = [e["post"] for e in newest[:spec.SEQUENCE_LENGTH]]
    return posts, authors, pairs, sequences


def service_rows(posts, authors, pairs) -> dict[str, list[int]]:
    """Request rows naming every post, author and pair the recomputation knows, and unknown ones."""
    keys = [(p, AUTHOR_OF[p], 99) for p in sorted(posts)]
    keys += [(next(p for p in sorted(AUTHOR_OF) if AUTHOR_OF[p] == a), a, v) for v, a in sorted(pairs)]
    keys += [(999, 99, 99), (10, 98, 1)]
    assert {a for _, a, _ in keys} >= set(authors)
    return {"post_id": [k[0] for k in keys], "author_id": [k[1] for k in keys], "viewer_id": [k[2] for k in keys]}


def assert_online_equals(store, online, stream) -> None:
    posts, authors, pairs, sequences = recompute(stream)
    reader = PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=online)
    rows = service_rows(posts, authors, pairs)
    block = reader.read(rows)
    for i, (p, a, v) in enumerate(zip(rows["post_id"], rows["author_id"], rows["viewer_id"])):
        want = {**posts.get(p, {}), **authors.get(a, {}), **pairs.get((v, a), {})}
        for j, name in enumerate(reader.feature_names):
            if name in want:
                assert not block.missing[i, j] and block.values[i, j] == np.float32(want[name]), (name, p, a, v)
            else:
                assert block.missing[i, j], (name, p, a, v)
    theirs = store.get_online_features(features=[f"{spec.SEQUENCE_VIEW}:recent_post_ids"],
                                       entity_rows=[{"viewer_id": v} for v in sorted(sequences)]).to_dict()
    assert theirs["recent_post_ids"] == [sequences[v] for v in sorted(sequences)]


def drain(*workers: StreamFeatureWorker) -> list:
    stats = []
    while True:
        polled = [w.poll() for w in workers]
        stats += polled
        if not sum(s.entries for s in polled):
            return stats


def test_engagement_lines_are_read_or_refused_with_ingestions_reason():
    rules, day = engagement_rules(VOCABULARY), day_of_ms(T0)
    assert engagement_row(rules, line("e1", 3, 10, "dwell", T0, 12_000.0), day) == \
        EngagementRow(3, 10, AUTHOR_OF[10], "dwell", 12_000.0, T0)
    team = json.dumps({"event_id": "a", "viewer_id": "u-anna", "post_id": 10, "author_id": 2, "type": "like",
                       "ts": "2026-10-01T08:00:00Z", "surface": "home"})
    assert isinstance(engagement_row(rules, team, "2026-10-01"), EngagementRow)
    for text, reason in [("{oops", "malformed_json"), ("[1]", "malformed_json"),
                         (json.dumps({"event_id": "a"}), "missing_required:viewer_id"),
                         (line("a", 1, 10, "poke", T0), "bad_enum:type"),
                         (line("a", 1, 10, "like", T0).replace('"viewer_id": 1', '"viewer_id": true'),
                          "bad_type:viewer_id"),
                         (line("a", 1, 10, "dwell", T0).replace('"value": null', '"value": "long"'), "bad_type:value"),
                         (line("a", 1, 10, "like", T0).replace(iso_ms(T0), "yesterday"), "bad_type:ts"),
                         (line("a", 1, 10, "like", T0 + 2 * 86_400_000), "ts_in_future")]:
        assert engagement_row(rules, text, day) == reason


def test_counts_and_windows_equal_a_python_recomputation(store, online, stream):
    append(stream, generated())
    worker = StreamFeatureWorker(stream, store, client=online, batch=100, chunk=40)
    stats = drain(worker)
    assert all(s.reconciles for s in stats)
    assert sum(s.applied for s in stats) == 400 and sum(s.duplicates for s in stats) == 0
    assert sum(s.ignored for s in stats) == 1
    assert sum((s.dead_lettered for s in stats), start=Counter()) == {
        "malformed_json": 1, "bad_enum:type": 1, "too_late": 1}
    assert {d["reason"] for d in stream.dead_letters()} == {"malformed_json", "bad_enum:type", "too_late"}
    posts = recompute(stream)[0].values()  # the set exercises every window: some counts differ per window
    assert any(0 < f["post_rt_engagements_5m"] < f["post_rt_engagements_1h"] < f["post_rt_engagements_24h"]
               for f in posts)
    assert_online_equals(store, online, stream)
    assert stream.lag(GROUP).backlog == 0


def test_the_packed_view_equals_get_online_features(store, online, stream):
    append(stream, generated(200, seed=5))
    drain(StreamFeatureWorker(stream, store, client=online))
    posts, authors, pairs, _ = recompute(stream)
    reader = PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=online)
    assert reader.check()
    rows = service_rows(posts, authors, pairs)
    ours = reader.read(rows)
    theirs = store.get_online_features(features=store.get_feature_service(spec.SERVICE),
                                       entity_rows=[dict(zip(rows, r)) for r in zip(*rows.values())]).to_dict()
    cells = 0
    for j, name in enumerate(reader.feature_names):
        for i, value in enumerate(theirs[name]):
            cells += 1
            assert ours.missing[i, j] == (value is None), (name, i)
            if value is not None:
                assert ours.values[i, j] == np.float32(value), (name, i)
    assert cells > 1_000 and ours.missing.any() and not ours.missing.all()


def test_two_workers_in_one_group_reach_what_one_worker_reaches(store, online, stream):
    append(stream, generated(300, seed=9))
    first = StreamFeatureWorker(stream, store, client=online, name="features-a", batch=30, chunk=7, partitions=[0])
    second = StreamFeatureWorker(stream, store, client=online, name="features-b", batch=20, chunk=9,
                                 partitions=[1, 2])
    with pytest.raises(PartitionTaken, match="partition 1"):
        StreamFeatureWorker(stream, store, client=online, name="features-c", partitions=[1])
    stats = drain(first, second)
    assert all(s.reconciles for s in stats) and sum(s.applied for s in stats) == 300
    assert all(sum(s.applied for s in stats[k::2]) for k in (0, 1))  # each did part of the work
    assert_online_equals(store, online, stream)


class Killed(Exception):
    pass


def test_workers_killed_mid_batch_lose_nothing_and_count_nothing_twice(store, online, stream):
    append(stream, generated(300, seed=11))
    other = StreamFeatureWorker(stream, store, client=online, name="features-b", batch=25, partitions=[1, 2])

    def dies_after(step: str, times: int):
        seen = []

        def hook(name: str) -> None:
            seen.append(name)
            if name == step and seen.count(step) == times:
                raise Killed(step)
        return hook

    # the first dies after applying the first chunk of its batch; the second after applying all of
    # its batch but before writing a row; neither acknowledged anything. The third finishes.
    stats = []
    # the second's chunks are of 10, not 15: one of them straddles the mark the first left
    for name, chunk, hook in [("features-a1", 15, dies_after("chunk", 1)),
                              ("features-a2", 10, dies_after("applied", 1))]:
        doomed = StreamFeatureWorker(stream, store, client=online, name=name, batch=40, chunk=chunk, partitions=[0])
        doomed.on_step = hook
        stats.append(other.poll())
        with pytest.raises(Killed):
            doomed.poll()
        doomed.close()  # its lease gone, as after LEASE_S
    survivor = StreamFeatureWorker(stream, store, client=online, name="features-a3", batch=40, chunk=15,
                                   partitions=[0])
    stats += drain(survivor, other)
    assert all(s.reconciles for s in stats)
    assert sum(s.reclaimed for s in stats) > 0 and sum(s.duplicates for s in stats) > 0
    # what the dead applied came back to the survivor as duplicates: every engagement once, either way
    assert sum(s.applied + s.duplicates for s in stats) == 300
    assert_online_equals(store, online, stream)
    assert stream.lag(GROUP).backlog == 0


def test_chunks_sent_together_fail_as_a_chain_when_the_mark_is_not_where_planned(store, online, stream):
    """A worker sends a batch's chunks without waiting for replies. A previous owner that applied part
    of the batch (its mark inside the second chunk) fails that chunk and every later one; they are
    sent again one by one: what it applied is a duplicate, the rest is applied once."""
    viewer = next(v for v in range(1, 100) if stream.partition_of(str(v)) == 0)
    append(stream, [(T0 + k * MIN, Event("engagements", line(f"c{k}", viewer, 10 + k % 5, "like", T0 + k * MIN),
                                         str(viewer))) for k in range(40)])
    ids = [entry.id for entry in stream.after(0, "0-0", 100)]
    for q in range(stream.partitions):  # as if a previous owner had applied the first 15, every slice
        online.set(f"loupe:rt:applied:{{{q}}}:0", ids[14])
    worker = StreamFeatureWorker(stream, store, client=online, name="features-chain", batch=40, chunk=10,
                                 partitions=[0])
    sent = []
    worker.on_step = sent.append
    stats = worker.poll()
    assert sent.count("chunk") == 4 and (stats.applied, stats.duplicates) == (25, 15) and stats.reconciles
    assert online.get("loupe:rt:applied:{0}:0").decode() == ids[-1]
    assert online.llen(f"loupe:rt:seq:{{0}}:{viewer}") == 25  # each applied engagement once in the sequence


def test_a_post_row_is_written_by_its_partitions_owner_even_after_the_owner_dies(store, online, stream):
    """Posts and authors change on every partition and have one writer: the worker that applies an
    engagement leaves the post's row to the owner of the post's partition. An owner that dies holding
    its claim leaves it to the next owner, which writes the row without a new engagement."""
    post = next(p for p in AUTHOR_OF if stream.partition_of(f"loupe:rt:post:{p}") == 2)
    viewer = next(v for v in range(1, 100) if stream.partition_of(str(v)) == 0)
    append(stream, [(T0, Event("engagements", line("e1", viewer, post, "like", T0), str(viewer)))])
    reader = PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=online)
    like = reader.feature_names.index("post_rt_like_5m")

    def likes() -> float | None:
        block = reader.read({"post_id": [post], "author_id": [AUTHOR_OF[post]], "viewer_id": [viewer]})
        return None if block.missing[0, like] else float(block.values[0, like])

    applier = StreamFeatureWorker(stream, store, client=online, name="features-a", partitions=[0])
    assert applier.poll().applied == 1 and likes() is None  # applied here, its row due on partition 2

    def dies(step: str) -> None:
        if step == "claimed":
            raise Killed(step)
    doomed = StreamFeatureWorker(stream, store, client=online, name="features-b", partitions=[1, 2])
    doomed.on_step = dies
    with pytest.raises(Killed):
        doomed.poll()
    doomed.close()
    assert likes() is None
    heir = StreamFeatureWorker(stream, store, client=online, name="features-c", partitions=[1, 2])
    assert heir.poll().entries == 0 and likes() == 1.0
    assert online.keys("loupe:rt:claimed:*") == [] and online.keys("loupe:rt:dirty:*") == []
    assert_online_equals(store, online, stream)


def test_trending_sets_rank_posts_by_their_decayed_score_globally_and_per_hashtag(store, online, stream):
    """The trending sets hold each post whose windows reach the bar, at log2(score) + last / half-life
    (spec.trend_score over a plain recomputation of its windows), in the global set and in the set
    of each of its hashtags (from its publish event, spelled as the daily build spells them); a
    deleted post leaves every set."""
    tags = {post: ("Cats", "#travel") if post % 2 else ("food",) for post in AUTHOR_OF}
    append(stream, [(T0 - HOUR, post_event(post, AUTHOR_OF[post], T0 - HOUR, hashtags=tags[post]))
                    for post in AUTHOR_OF])
    append(stream, generated(400, seed=13))
    quiet = [json.dumps({"event_id": f"q{k}", "viewer_id": k, "post_id": 99, "author_id": 7, "type": "like",
                         "value": None, "ts": iso_ms(T0 + 30 * HOUR), "surface": "home", "request_id": None})
             for k in (1, 2)]  # two likes: below the bar
    append(stream, [(T0 + 30 * HOUR, Event("engagements", text, str(k))) for k, text in zip((1, 2), quiet)])
    workers = [StreamFeatureWorker(stream, store, client=online, name="features-a", partitions=[0]),
               StreamFeatureWorker(stream, store, client=online, name="features-b", partitions=[1, 2])]
    stats = drain(*workers)
    assert all(s.reconciles for s in stats) and sum(s.posts for s in stats) == len(AUTHOR_OF)
    posts = recompute(stream)[0]

    def expected(members: set[int]) -> dict[bytes, float]:
        out = {}
        for post in members & set(posts):
            f = posts[post]
            score = spec.trend_score({w.name: f[f"post_rt_engagements_{w.name}"] for w, _ in spec.TREND_WINDOWS})
            if score is not None:
                out[b"%d:%d" % (post, AUTHOR_OF[post])] = math.log2(score) + f["_last_ms"] / spec.TREND_HALF_LIFE_MS
        return out

    def held(key: str) -> dict[bytes, float]:
        return dict(online.zrange(key, 0, -1, withscores=True))

    everything = expected(set(AUTHOR_OF))
    assert len(everything) >= 3 and b"99:7" not in held(spec.trend_key())
    assert held(spec.trend_key()) == pytest.approx(everything, rel=0, abs=1e-9)
    for tag in ("cats", "travel", "food"):
        assert held(spec.trend_tag_key(tag)) == pytest.approx(
            expected({p for p, t in tags.items() if tag in {x.lstrip("#").lower() for x in t}}), rel=0, abs=1e-9)
    gone = next(p for p in AUTHOR_OF if b"%d:%d" % (p, AUTHOR_OF[p]) in everything and p % 2)
    append(stream, [(T0 + 31 * HOUR, post_event(gone, AUTHOR_OF[gone], T0 - HOUR, deleted_ms=T0 + 31 * HOUR))])
    drain(*workers)
    member = b"%d:%d" % (gone, AUTHOR_OF[gone])
    assert all(member not in held(key) for key in (spec.trend_key(), spec.trend_tag_key("cats"),
                                                   spec.trend_tag_key("travel")))


def test_state_keys_expire_a_day_after_their_last_days_first_change(store, online, stream):
    """A counter key's expiry is set when it is created and when its newest event moves into another
    day (not at every change), so it outlives its last change by at least STATE_TTL_S."""
    day = T0 - T0 % 86_400_000 + 3 * HOUR
    worker = StreamFeatureWorker(stream, store, client=online)
    state = spec.StateKeys(stream.partitions)
    keys = [state.key("post", 10)[1], state.key("author", AUTHOR_OF[10])[1], state.key("va", 1, AUTHOR_OF[10])[1]]

    def engage(k: int, ts: int) -> None:
        append(stream, [(ts, Event("engagements", line(f"t{k}", 1, 10, "like", ts), "1"))])
        drain(worker)

    engage(1, day)
    assert all(STATE_TTL_S < online.ttl(k) <= COUNTER_TTL_S for k in keys)
    assert online.hget(keys[0], "author") == str(AUTHOR_OF[10]).encode()
    for k in keys:
        online.expire(k, 1_000)  # as if time had passed since
    engage(2, day + HOUR)  # the same day: left as it is
    assert all(online.ttl(k) <= 1_000 for k in keys)
    engage(3, day + 86_400_000)  # the next day: set again
    assert all(STATE_TTL_S < online.ttl(k) <= COUNTER_TTL_S for k in keys)


class RecordedStop(threading.Event):
    """A stop event that records each wait `run` makes between polls, and is set at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.set()
        return True


def test_run_lingers_after_a_poll_with_no_full_batch_and_not_after_a_full_one(store, online, stream):
    append(stream, generated(60, seed=11))
    polls: list = []
    worker = StreamFeatureWorker(stream, store, client=online, batch=8, linger_ms=10_000)
    worker.on_poll = polls.append
    stop = RecordedStop()
    worker.run(stop, block_ms=1)
    # full polls follow each other at once; the first that finds every partition short of a batch
    # waits what is left of linger_ms since it started, and that wait (set by the stop) ends the run
    assert [p.full for p in polls] == [True] * (len(polls) - 1) + [False] and len(polls) > 1
    assert len(stop.waits) == 1 and 0 < stop.waits[0] <= 10.0
    assert sum(p.entries for p in polls) == 64 and stream.lag(GROUP).backlog == 0  # 60 + 4 refused or ignored


def test_the_backfill_equals_what_the_online_store_held_at_each_time(store, online, stream):
    """One definition, two executions: at random times t between engagements, the real-time
    service's features read online (the worker having applied every engagement up to t) equal
    Feast's point-in-time retrieval at t of the rows the backfill computed from the same
    engagements. In event-time order over ~20 hours across a UTC midnight, within the views' ttl."""
    rng = np.random.default_rng(17)
    times = np.sort(T0 + rng.integers(0, 20 * HOUR, 300))
    times[100:130] = times[100] + np.sort(rng.integers(0, 4 * MIN, 30))  # a burst: the short windows fill
    times = np.sort(times)
    engagements = []
    for k, ts in enumerate(times.tolist()):
        post, viewer = int(rng.integers(10, 22)), int(rng.integers(1, 9))
        kind = TYPES[int(rng.integers(0, len(TYPES)))]
        value = float(rng.integers(1, 20_000)) if kind == "dwell" else None
        engagements.append({"viewer_id": viewer, "post_id": post, "author_id": AUTHOR_OF[post], "type": kind,
                            "value": value, "ts": ts, "line": line(f"b{k}", viewer, post, kind, ts, value)})
    worker = StreamFeatureWorker(stream, store, client=online, batch=50)
    service = store.get_feature_service(spec.SERVICE)
    cuts = sorted(rng.choice(np.arange(20, len(engagements)), 8, replace=False).tolist())
    held, done = [], 0
    for cut in cuts:
        for e in engagements[done:cut]:
            stream.append([Event("engagements", e["line"], str(e["viewer_id"]))], at_ms=e["ts"])
        done = cut
        drain(worker)
        gap = (engagements[cut]["ts"] - engagements[cut - 1]["ts"]) if cut < len(engagements) else MIN
        at = engagements[cut - 1]["ts"] + int(rng.integers(0, max(1, gap)))  # before the next engagement
        seen = {(e["post_id"], e["viewer_id"]) for e in engagements[:cut]}
        rows = [{"post_id": p, "author_id": AUTHOR_OF[p], "viewer_id": v} for p, v in sorted(seen)]
        rows.append({"post_id": 999, "author_id": 99, "viewer_id": 99})  # never engaged with: nothing either side
        values = store.get_online_features(features=service, entity_rows=rows).to_dict()
        held += [{**row, "event_timestamp": pd.Timestamp(at, unit="ms", tz="UTC"),
                  **{name: values[name][i] for name in values if name not in row}} for i, row in enumerate(rows)]

    frame = pd.DataFrame(engagements).drop(columns="line")
    frame["ts"] = pd.to_datetime(frame["ts"], unit="ms", utc=True)
    lake = registry_lake(store)
    write_view_rows(view_rows(frame, VOCABULARY), lake, "2026-09-21")
    online_held = pd.DataFrame(held)
    entity_df = online_held[["post_id", "author_id", "viewer_id", "event_timestamp"]].assign(_row=range(len(held)))
    batch = store.get_historical_features(entity_df=entity_df, features=service).to_df().sort_values("_row")
    # Loupe's own as-of join of the real-time views (features.retrieval) is Feast's rule, cell for cell
    ours = historical_features(store, entity_df.drop(columns="_row"), spec.SERVICE)
    for p in service.feature_view_projections:
        for f in p.features:
            np.testing.assert_array_equal(ours[f"{p.name}__{f.name}"].to_numpy(np.float64),
                                          batch[f.name].to_numpy(np.float64), err_msg=f.name)
    features = [name for name in online_held.columns if name not in entity_df.columns]
    assert len(features) == sum(len(p.features) for p in service.feature_view_projections) and len(batch) == len(held)
    for name in features:
        ours = online_held[name].astype("float64").to_numpy()
        theirs = batch[name].astype("float64").to_numpy()
        same = (np.isnan(ours) & np.isnan(theirs)) | (ours.astype(np.float32) == theirs.astype(np.float32))
        assert same.all(), (name, online_held.loc[~same].head(3).to_dict("records"), theirs[~same][:3])
    assert online_held["post_rt_like_5m"].notna().any() and (online_held["post_rt_engagements_5m"] > 0).any()


def test_what_a_lagging_stream_served_is_among_the_values_of_the_delay_before_the_request(store, online, stream):
    """The skew check's allowance for the stream's delay (training/skew.py): the worker has applied
    a post's likes up to one, the rest are in flight when a request at t reads the online store.
    The value it reads is not the one training retrieves as of t, but it is among the values
    `realtime_values_since` gives for a lookback that reaches the first engagement in flight, and
    not among those of a shorter one."""
    t1 = T0 + 5 * 24 * HOUR  # a day of its own in the module's lake
    times = [t1 + k * 20_000 for k in range(12)]  # a like every 20 s on post 600 by viewers 1..12
    rows = pd.DataFrame({"post_id": 600, "author_id": 60, "viewer_id": range(1, 13), "type": "like", "value": None,
                         "ts": pd.to_datetime(times, unit="ms", utc=True)})
    applied = 8
    append(stream, [(ts, Event("engagements", json.dumps({**row, "event_id": f"l{k}", "ts": iso_ms(ts),
                                                           "surface": "home"}), str(row["viewer_id"])))
                    for k, (ts, row) in enumerate(zip(times[:applied], rows.drop(columns="ts").to_dict("records")))])
    drain(StreamFeatureWorker(stream, store, client=online))
    write_view_rows(view_rows(rows, VOCABULARY), registry_lake(store), day_of_ms(t1))
    at = times[-1] + 5_000
    entity = pd.DataFrame({"post_id": [601, 600], "author_id": [61, 60], "viewer_id": [99, 99],  # 601: no likes
                           "event_timestamp": [pd.Timestamp(at, unit="ms", tz="UTC")] * 2})
    name = f"{spec.POST_VIEW}__post_rt_like_5m"
    held = store.get_online_features(features=[f"{spec.POST_VIEW}:post_rt_like_5m"],
                                     entity_rows=[{"post_id": 600}]).to_dict()["post_rt_like_5m"][0]
    assert held == applied and historical_features(store, entity, spec.SERVICE)[name].iloc[1] == 12

    def offered(lookback_ms: int, row: int = 1) -> list[float]:
        values = realtime_values_since(store, entity, spec.SERVICE, pd.Timedelta(milliseconds=lookback_ms))
        return values.loc[(values["feature"] == name) & (values["row"] == row), "value"].tolist()

    assert held in offered(at - times[applied] + 1)  # reaches back to the first like in flight
    assert held not in offered(at - times[applied + 1])  # one like short of it
    everything = offered(at - times[0] + 1)  # from before the first like: nothing yet, then each row
    assert len(everything) == 13 and np.isnan(everything[0]) and everything[-1] == 12
    assert len(offered(at - times[0] + 1, row=0)) == 1 and np.isnan(offered(at - times[0] + 1, row=0)[0])


def test_a_backfill_kept_from_a_time_is_the_full_one_from_that_time():
    """A day's rows are computed with the day before filling the windows, and equal the rows of the
    whole replay from the day's start (a 24 h window reaches into the day before)."""
    rng = np.random.default_rng(5)
    n = 400
    posts = rng.integers(10, 22, n)
    frame = pd.DataFrame({"viewer_id": rng.integers(1, 9, n), "post_id": posts,
                          "author_id": [AUTHOR_OF[int(p)] for p in posts],
                          "type": [TYPES[int(k)] for k in rng.integers(0, len(TYPES), n)], "value": None,
                          "ts": pd.to_datetime(T0 + rng.integers(0, 40 * HOUR, n), unit="ms", utc=True)})
    frame.loc[frame["type"] == "dwell", "value"] = 30_000.0
    midnight = (T0 // 86_400_000 + 1) * 86_400_000
    whole, kept = view_rows(frame, VOCABULARY), view_rows(frame, VOCABULARY, keep_from_ms=midnight)
    for view, rows in whole.items():
        later = rows[rows["event_timestamp"] >= pd.Timestamp(midnight, unit="ms", tz="UTC")].reset_index(drop=True)
        assert 0 < len(later) < len(rows)
        pd.testing.assert_frame_equal(kept[view], later)
    assert (whole[spec.POST_VIEW]["post_rt_engagements_24h"] > 0).any()


def test_a_backfill_of_rows_it_cannot_count_says_why():
    rows = pd.DataFrame({"viewer_id": [1], "post_id": [10], "author_id": [3], "type": ["poke"], "value": [None],
                         "ts": [pd.Timestamp(T0, unit="ms", tz="UTC")]})
    with pytest.raises(ValueError, match=r"vocabulary does not define: \['poke'\]"):
        view_rows(rows, VOCABULARY)
    with pytest.raises(ValueError, match=r"lack required columns \['author_id'\]"):
        view_rows(rows.drop(columns="author_id"), VOCABULARY)


def test_the_ranking_reader_leaves_out_a_real_time_row_older_than_its_ttl_as_training_does(store, online, stream):
    """feed_ranker_v2 online: a real-time row is as of its entity's latest engagement. One older than
    its view's ttl (a day) before the request is missing, as Feast's point-in-time retrieval leaves
    it out of a training set; a fresher one is read, and both are while within the ttl. Apart from
    that rule the reader equals Feast's get_online_features (features.online.parity)."""
    old, fresh = T0, T0 + 20 * HOUR
    posts, authors, viewers = [500, 501], [40, 41], [30, 31]
    rows = pd.DataFrame({"post_id": posts, "author_id": authors, "viewer_id": viewers, "type": "like",
                         "value": None, "ts": pd.to_datetime([old, fresh], unit="ms", utc=True)})
    append(stream, [(ts, Event("engagements", json.dumps({**row, "event_id": f"e{k}", "ts": iso_ms(ts),
                                                           "surface": "home"}), str(row["viewer_id"])))
                    for k, (ts, row) in enumerate(zip((old, fresh), rows.drop(columns="ts").to_dict("records")))])
    drain(StreamFeatureWorker(stream, store, client=online))
    lake = registry_lake(store)
    write_view_rows(view_rows(rows, VOCABULARY), lake, day_of_ms(old))  # named by its rows' day, as backfill_days
    reader = RankingFeatureReader(store, SERVICE_V2, client=online)
    names = [f"{spec.POST_VIEW}__post_rt_like_24h", f"{spec.PAIR_VIEW}__va_rt_positive_today"]
    columns = [reader.feature_names.index(name) for name in names]
    for hours, expected in ((21, [[1.0, 1.0], [1.0, 1.0]]), (25, [[None, None], [1.0, 1.0]])):
        at_s = (T0 + hours * HOUR) // 1000
        got = reader.read(viewers, authors, posts, at_s)
        served = [[None if got.missing[i, j] else float(got.values[i, j]) for j in columns] for i in range(2)]
        assert served == expected, hours
        parity = reader_vs_feast(store, reader, np.array(viewers), np.array(authors), np.array(posts), at_s)
        assert parity.ok, parity.mismatched[:3]
        entity = rows[["post_id", "author_id", "viewer_id"]].assign(
            event_timestamp=pd.Timestamp(at_s, unit="s", tz="UTC"))
        training = historical_features(store, entity, spec.SERVICE)[names]
        assert [[None if pd.isna(v) else float(v) for v in training.iloc[i]] for i in range(2)] == expected, hours


def test_a_backfill_of_days_reads_late_lines_once_and_skips_days_not_asked_for(tmp_path):
    """backfill_days over the lake: a day's engagements are those on that day from its partition and
    the next (late lines), once each by event_id; a day between the asked ones is replayed into the
    windows but not written; the day before the first only fills them."""
    day0, day1, day2, day3 = (day_of_ms(T0 + k * 86_400_000) for k in range(4))
    start = (T0 // 86_400_000) * 86_400_000

    def rows(*events: tuple[str, int, int]) -> pd.DataFrame:
        ts = pd.to_datetime([e[2] for e in events], unit="ms", utc=True).astype("datetime64[us, UTC]")  # as Spark's
        return pd.DataFrame({"event_id": [e[0] for e in events], "viewer_id": 1, "post_id": [e[1] for e in events],
                             "author_id": 7, "type": "like", "value": None, "ts": ts})

    partitions = {
        day0: rows(("a", 10, start + 23 * HOUR)),  # fills day1's 24 h window
        day1: rows(("b", 10, start + 86_400_000 + HOUR)),
        day2: rows(("c", 10, start + 86_400_000 + 2 * HOUR),  # late: day1's, landed on day2
                   ("b", 10, start + 86_400_000 + HOUR),  # the same line again
                   ("d", 11, start + 2 * 86_400_000 + HOUR)),
        day3: rows(("e", 11, start + 3 * 86_400_000 + HOUR)),
    }
    for day, frame in partitions.items():
        folder = tmp_path / "engagements" / f"dt={day}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-0.parquet")
        (folder / "_SUCCESS").touch()
    written = backfill_days(tmp_path, [day3, day1], VOCABULARY)
    assert sorted(written) == [day1, day3] and written[day1][spec.POST_VIEW] == 2
    post_rows = pd.read_parquet(tmp_path / "features" / "realtime" / spec.POST_VIEW / f"{day1}.parquet")
    assert post_rows["post_rt_like_24h"].tolist() == [2.0, 3.0]  # a (day0), b, c: b once
    later = pd.read_parquet(tmp_path / "features" / "realtime" / spec.POST_VIEW / f"{day3}.parquet")
    assert later["post_id"].tolist() == [11] and later["post_rt_like_24h"].tolist() == [1.0]  # d is 48 h old
    assert not (tmp_path / "features" / "realtime" / spec.POST_VIEW / f"{day2}.parquet").exists()


def two_days_of_engagements(rng: np.random.Generator, start: int, n: int) -> pd.DataFrame:
    """`n` engagements of 8 viewers with 12 posts over 40 hours from `start` (ms), as lake rows
    (ts_ms in place of ts), in time order."""
    times = np.sort(start + rng.integers(0, 40 * HOUR, n))
    rows = pd.DataFrame({"event_id": [f"w{k}" for k in range(len(times))],
                         "viewer_id": rng.integers(1, 9, len(times)), "post_id": rng.integers(10, 22, len(times)),
                         "type": [TYPES[int(k)] for k in rng.integers(0, len(TYPES), len(times))], "ts_ms": times})
    rows["author_id"] = rows["post_id"].map(AUTHOR_OF)
    rows["value"] = np.where(rows["type"] == "dwell", 20_000.0, np.nan)
    return rows


def land_engagements(rows: pd.DataFrame, lake: Path) -> None:
    """`rows` (two_days_of_engagements) as the lake's engagements partitions, a day each."""
    for day, frame in rows.groupby(rows["ts_ms"] // 86_400_000):
        folder = lake / "engagements" / f"dt={day_of_ms(int(day) * 86_400_000)}"
        folder.mkdir(parents=True)
        lake_rows = frame.assign(ts=pd.to_datetime(frame["ts_ms"], unit="ms", utc=True).astype("datetime64[us, UTC]"))
        lake_rows.drop(columns="ts_ms").to_parquet(folder / "part-0.parquet")
        (folder / "_SUCCESS").touch()


def test_a_warm_start_from_the_lake_holds_what_the_worker_would_and_the_worker_counts_on(store, online, stream,
                                                                                        redis_server, tmp_path):
    """An online store the stream never fed, warm-started from the lake's last two days, serves the
    same real-time rows as one whose worker streamed those engagements; engagements streamed after
    count on from there (the state hashes are the worker's), and an entity the worker already holds
    is left alone."""
    start = (T0 // 86_400_000 + 1) * 86_400_000
    rows = two_days_of_engagements(np.random.default_rng(23), start, 300)

    def event(row) -> Event:
        value = None if pd.isna(row["value"]) else float(row["value"])
        return Event("engagements", line(row["event_id"], int(row["viewer_id"]), int(row["post_id"]), row["type"],
                                         int(row["ts_ms"]), value), str(row["viewer_id"]))

    append(stream, [(int(r["ts_ms"]), event(r)) for _, r in rows.iterrows()])
    worker = StreamFeatureWorker(stream, store, client=online)
    drain(worker)
    land_engagements(rows, tmp_path / "lake")
    warm = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{DB + 1}")
    warm.flushdb()
    held = spec.StateKeys(stream.partitions).key("author", AUTHOR_OF[10])[1]
    warm.hset(held, mapping={"last": 1, "*|h|0": 7})  # the worker's already: not overwritten
    report = warm_start(store, tmp_path / "lake", day_of_ms(start + 86_400_000), VOCABULARY, client=warm,
                        partitions=stream.partitions)
    assert report["author_held"] == 1 and report["post_written"] == 12 and report["va_written"] > 12
    assert warm.hget(held, "*|h|0") == b"7"
    warm.delete(held)
    warm_start(store, tmp_path / "lake", day_of_ms(start + 86_400_000), VOCABULARY, client=warm,
               partitions=stream.partitions)

    def same_rows() -> None:
        posts, authors, pairs = set(AUTHOR_OF), set(AUTHOR_OF.values()), set(zip(rows["viewer_id"], rows["author_id"]))
        keys = service_rows(posts, authors, pairs)
        streamed = PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=online).read(keys)
        started = PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=warm).read(keys)
        np.testing.assert_array_equal(streamed.missing, started.missing)
        np.testing.assert_array_equal(streamed.values, started.values)
        np.testing.assert_array_equal(streamed.event_ts_us, started.event_ts_us)
        assert not streamed.missing[:-2].all(axis=1).any()  # every known entity has a row

    same_rows()
    last_ms = int(rows["ts_ms"].iloc[-1])
    later = rows.iloc[-3:].assign(event_id=["x1", "x2", "x3"], ts_ms=last_ms + np.array([MIN, 2 * MIN, 3 * MIN]))
    append(stream, [(int(r["ts_ms"]), event(r)) for _, r in later.iterrows()])
    drain(worker)
    with EmbeddedRedis(data_dir=tmp_path / "stream2", durable=True) as server:
        fresh = ValkeyStream.connect(server.url, partitions=3)
        append(fresh, [(int(r["ts_ms"]), event(r)) for _, r in later.iterrows()])
        drain(StreamFeatureWorker(fresh, store, client=warm))
    same_rows()


def test_a_published_post_has_its_post_tags_row_online_at_once_as_the_daily_build_writes_it(store, online, stream):
    """A post published on the stream is ranked with its age and hashtags before the next daily build:
    the worker writes its `post_tags` row (features/jobs/post_tags.py's values: the tags' bucket
    shares as the post carries them, repeats counted; the publication time in whole seconds), both
    the hash Feast reads and the packed record the ranking service reads."""
    tags = {10: ("Cats", "#travel", "cats"), 11: (), 12: ("food",)}
    published = {post: T0 - HOUR + 1_234 * post for post in tags}
    append(stream, [(ms, post_event(post, AUTHOR_OF[post], ms, hashtags=tags[post])) for post, ms in published.items()])
    assert sum(s.posts for s in drain(StreamFeatureWorker(stream, store, client=online))) == len(tags)
    theirs = store.get_online_features(features=[f"{POST_TAGS.name}:{f}" for f in POST_TAGS.features],
                                       entity_rows=[{c.POST_ID: p} for p in tags]).to_dict()
    reader = PackedFeatureReader.from_feature_store(store, spec.SERVICE, client=online, full_feature_names=True,
                                                    extra_views=[POST_TAGS.name])  # as the ranking reader reads it
    block = reader.read({c.POST_ID: list(tags), c.AUTHOR_ID: [AUTHOR_OF[p] for p in tags], c.VIEWER_ID: [1] * 3})
    ours = [reader.feature_names.index(f"{POST_TAGS.name}__{f}") for f in POST_TAGS.features]
    assert not block.missing[:, ours].any()
    for i, post in enumerate(tags):
        expected = [*np.float32(tag_vector(tags[post])), np.float32(published[post] // 1000)]
        assert [np.float32(theirs[f][i]) for f in POST_TAGS.features] == expected, post
        assert block.values[i, ours].tolist() == expected, post
    assert sum(v * v for v in block.values[0, ours[:-1]]) == pytest.approx(1.0)  # two "cats", one "travel"
    assert not block.values[1, ours[:-1]].any()  # no hashtags: all zeros
