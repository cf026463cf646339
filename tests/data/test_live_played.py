"""data.world.live_played: what live mode records of its plays, read back by the next run (which
days to ingest) and by the skew check (the clock's speed each day was served at)."""

from __future__ import annotations

from data.days import day_start_ms
from data.world.live_played import Played

HOUR = 3_600_000


def test_each_play_adds_its_days_speed_and_the_last_end_is_kept(tmp_path):
    path = tmp_path / "live" / "tiny-played.json"
    assert Played.read(path) == Played() and Played().speed_of("2026-10-05") == 1.0  # never played: real time
    start = day_start_ms("2026-10-05") + 2 * HOUR
    Played.record(path, start, day_start_ms("2026-10-06"), 480.0)  # ends at midnight: one day
    first = Played.read(path)
    assert first.until == "2026-10-06T00:00:00.000Z" and first.speeds == {"2026-10-05": 480.0}
    Played.record(path, day_start_ms("2026-10-06"), day_start_ms("2026-10-07") + 5 * HOUR, 240.0)
    second = Played.read(path)
    assert second.until == "2026-10-07T05:00:00.000Z"
    assert [second.speed_of(d) for d in ("2026-10-04", "2026-10-05", "2026-10-06", "2026-10-07")] == \
        [1.0, 480.0, 240.0, 240.0]


def test_a_record_of_the_earlier_format_reads_as_played_at_real_time(tmp_path):
    path = tmp_path / "played.json"
    path.write_text('{"until": "2026-10-06T00:00:00.000Z"}')
    assert Played.read(path) == Played("2026-10-06T00:00:00.000Z", {})


def test_the_skew_check_reads_the_speed_through_the_workspace(tmp_path):
    from pipelines.resources import WorkspaceResource

    path = tmp_path / "played.json"
    Played.record(path, day_start_ms("2026-10-05"), day_start_ms("2026-10-06"), 480.0)
    workspace = WorkspaceResource(landing_dir="l", lake_dir="k", live_played_file=str(path))
    assert workspace.clock_speed_of("2026-10-05") == 480.0 and workspace.clock_speed_of("2026-10-06") == 1.0
    assert WorkspaceResource(landing_dir="l", lake_dir="k").clock_speed_of("2026-10-05") == 1.0  # a team's data
