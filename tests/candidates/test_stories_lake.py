"""The stories live at a day's end, read from the lake into the feed cache (the daily asset and a
cache rebuilt after a restart): posted in the day's last 24 h, on either landing day, and not deleted
by then; an export without a stories log loads nothing and says so."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from candidate_gen import stories
from data import columns as c
from data import lake
from data.columns import STORY_TTL_MS
from data.days import day_end_ms
from tests.candidates.helpers import fresh_config

DAY, BEFORE = "2026-11-02", "2026-11-01"
END = day_end_ms(DAY)


def land(lake_dir, day: str, rows: list[tuple]) -> None:
    """(story_id, author_id, created_ms, deleted_ms | None) rows as the day's written partition."""
    ts = pa.timestamp("us", tz="UTC")
    table = pa.table({c.STORY_ID: pa.array([r[0] for r in rows], pa.int64()),
                      c.AUTHOR_ID: pa.array([r[1] for r in rows], pa.int64()),
                      c.CREATED_AT: pa.array([r[2] * 1000 for r in rows], ts),
                      c.MEDIA_TYPE: pa.array(["photo"] * len(rows)),
                      c.DELETED_AT: pa.array([None if r[3] is None else r[3] * 1000 for r in rows], ts)})
    folder = lake.partition_dir(lake_dir, "stories", day)
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    (folder / "_SUCCESS").touch()


def test_the_stories_live_at_the_days_end_are_loaded_and_no_other(redis_server, tmp_path):
    land(tmp_path, BEFORE, [(1, 10, END - STORY_TTL_MS, None),  # expired exactly at the day's end
                            (2, 10, END - STORY_TTL_MS + 1, None),  # its last live millisecond
                            (3, 11, END - 20 * 3_600_000, None)])  # deleted the next day, below
    land(tmp_path, DAY, [(3, 11, END - 20 * 3_600_000, END - 1_000), (4, 11, END - 1_000, None),
                         (4, 11, END - 1_000, None), (5, 12, END + 1, None)])  # 4 landed twice; 5 later
    live = stories.live_in_lake(tmp_path, DAY)
    assert live[c.STORY_ID].tolist() == [2, 4] and live["created_ms"].tolist() == [END - STORY_TTL_MS + 1, END - 1_000]
    client, cfg = redis.Redis.from_url(redis_server.url), fresh_config()
    out = stories.load_from_lake(tmp_path, DAY, client, cfg.keys)
    assert out == {"day": DAY, "stories": 2, "authors": 2}
    assert client.zrange(cfg.keys.stories(10), 0, -1, withscores=True) == [(b"2", float(END - STORY_TTL_MS + 1))]
    assert client.zrange(cfg.keys.stories(11), 0, -1) == [b"4"] and not client.exists(cfg.keys.stories(12))
    assert stories.load_from_lake(tmp_path, DAY, client, cfg.keys) == out  # again: the same state
    assert client.zcard(cfg.keys.stories(11)) == 1
    assert stories.load_from_lake(tmp_path / "graph-only", DAY, client, cfg.keys)["absent"]
