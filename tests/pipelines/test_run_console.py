"""`make run`'s console: plain, short lines when it is not a terminal (CI, tests, a pipe), a live
progress display on one, and the time per stage; the summary sections built from what the stages
reported."""

from __future__ import annotations

import io

from pipelines.console import RunConsole, format_seconds
from pipelines.summary import format_candidates, format_features, format_ingest_table


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_each_step_is_one_plain_line_and_stages_are_timed():
    out = io.StringIO()
    console = RunConsole(out)
    with console.stage("ingest", total=2, title="ingesting 2 days ...") as stage:
        stage.advance("ingested 2026-10-01")
        stage.advance("ingested 2026-10-02")
    with console.stage("landing", title=""):
        pass
    with console.stage("ingest"):  # a stage that runs again adds up
        pass
    assert out.getvalue() == "ingesting 2 days ...\n  ingested 2026-10-01\n  ingested 2026-10-02\ningest ...\n"
    assert "\x1b" not in out.getvalue()
    assert list(console.seconds) == ["ingest", "landing"]
    table = console.timing_table().splitlines()
    assert table[0] == "time per stage:" and table[1].split()[0] == "ingest" and table[-1].split()[0] == "total"


def test_on_a_terminal_the_progress_display_goes_away_when_the_stage_ends():
    out = Terminal()
    console = RunConsole(out)
    assert console.live
    with console.stage("features", total=1) as stage:
        stage.advance("features 2026-10-01")
    assert "features" in out.getvalue() and "features" in console.seconds


def test_seconds_read_as_seconds_then_minutes():
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(61) == "1:01"
    assert format_seconds(3600) == "60:00"


def test_the_summary_names_values_outside_the_vocabulary_and_the_feature_assets():
    totals = {"engagements": {"rows_read": 10, "rows_landed": 7, "rows_quarantined": 3, "duplicates_dropped": 0,
                              "quarantined_by_reason": {"bad_enum:type": 3},
                              "unknown_values": {"type": {"superlike": 1, "double_tap": 2}}}}
    ingest = format_ingest_table(totals)
    assert "engagements  type: double_tap (2), superlike (1)" in ingest
    features = format_features({"rows_last_day": {"features/author": 2132},
                                "seconds": {"features/author": 83.0, "feast/online": 48.3},
                                "checks": {"feast/online:online_is_fresh": False}})
    assert "features/author" in features and "2,132" in features and "48.3" in features
    assert "check feast/online:online_is_fresh FAILED" in features
    candidates = format_candidates({"day": "2026-10-04", "seconds": {"candidates/rebuild": 3.3}, "fanout": {
        "events": 9, "applied": 9, "skipped": {}, "posts": 4, "celebrity_posts": 1, "deletions": 0,
        "fanout_targets": 20, "inserts": 18, "batches": 1, "retries": 0}})
    assert candidates.startswith("candidates for the end of 2026-10-04: rebuild 3.3 s")
    assert "9 of 9 events applied" in candidates
