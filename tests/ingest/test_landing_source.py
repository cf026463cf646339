"""Which landing folder a run reads, where a simulated world lives, and that nothing Loupe did not
write is ever changed or deleted (issue: make run used to delete a team's export)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from data.settings import Settings
from data.world.live_played import Played
from pipelines.operations import NoLandingData, claim_lake, prepare_landing, prepare_world
from pipelines.partitions import landing_days
from tests.team_export import fingerprint, write_team_export


def test_auto_source_reads_a_team_folder_and_falls_back_to_the_simulator(tmp_path: Path):
    home = tmp_path / "home"
    assert Settings.from_env({"LOUPE_HOME": str(home)}).source == "simulator"
    write_team_export(home / "landing", days=2, users=8, graph_only=True)
    auto = Settings.from_env({"LOUPE_HOME": str(home)})
    assert auto.source == "landing" and auto.landing_dir == home / "landing" and auto.truth_dir is None
    elsewhere = Settings.from_env({"LOUPE_HOME": str(home), "LOUPE_LANDING": str(tmp_path / "export")})
    assert elsewhere.source == "landing" and elsewhere.landing_dir == (tmp_path / "export").resolve()
    sim = Settings.from_env({"LOUPE_HOME": str(home), "LOUPE_SOURCE": "simulator", "LOUPE_WORLD": "tiny"})
    assert sim.landing_dir == sim.world_dir / "landing" and sim.world_dir.is_relative_to(home / "worlds")
    with pytest.raises(ValueError, match="LOUPE_SOURCE"):
        Settings.from_env({"LOUPE_HOME": str(home), "LOUPE_SOURCE": "kafka"})


def test_days_come_from_the_folder_whatever_their_dates(tmp_path: Path):
    export = tmp_path / "export"
    days = write_team_export(export, days=3, users=8)
    (export / "posts" / "not-a-day").mkdir()
    (export / "posts" / "not-a-day" / "x.jsonl").write_text("{}\n")
    (export / "follows" / "2019-01-01").mkdir()  # an empty day folder is no day to process
    assert landing_days(export) == days == ["2019-03-04", "2019-03-05", "2019-03-06"]
    landing = prepare_landing(Settings(home=tmp_path / "home", source="landing", landing=export))
    assert landing.days == days and landing.world is None


def test_an_empty_landing_folder_says_how_to_bring_data(tmp_path: Path):
    (tmp_path / "export").mkdir()
    with pytest.raises(NoLandingData, match=r"<log>/<YYYY-MM-DD>/\*\.jsonl"):
        prepare_landing(Settings(home=tmp_path / "home", source="landing", landing=tmp_path / "export"))


def test_switching_worlds_never_touches_a_teams_files(tmp_path: Path):
    home = tmp_path / "home"
    write_team_export(home / "landing", days=2, users=10)
    before = fingerprint(home / "landing")
    team = Settings.from_env({"LOUPE_HOME": str(home)})
    claim_lake(team)
    (team.lake_dir / "users").mkdir()  # stands in for a lake built from the team's data

    sim = Settings(home=home, source="simulator", world="tiny")
    world = prepare_world(sim)
    assert (sim.world_dir / "world.json").exists() and landing_days(sim.landing_dir)[0] == world["days"][0]
    claim_lake(sim)  # the lake was built from another folder: Loupe's own lake is rebuilt
    assert not (sim.lake_dir / "users").exists()
    assert prepare_world(sim) == world  # reused, not generated again
    claim_lake(team)
    assert fingerprint(home / "landing") == before  # not one byte changed, nothing deleted
    assert (sim.world_dir / "world.json").exists()  # nor was the simulated world's folder


def test_days_live_mode_played_to_their_end_are_ingested_with_the_worlds(tmp_path: Path):
    """The stream's archiver lands a play's days beside the world's; a run takes those the play
    finished, never the stub of the day it stopped in (which would become the test day)."""
    sim = Settings(home=tmp_path / "home", source="simulator", world="tiny")
    sim.world_dir.mkdir(parents=True)
    (sim.world_dir / "world.json").write_text(json.dumps({"days": ["2026-10-01", "2026-10-02"]}))
    for day in ("2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05"):
        (sim.landing_dir / "impressions" / day).mkdir(parents=True)
        (sim.landing_dir / "impressions" / day / "stream-p0.jsonl").write_text("{}\n")
    assert prepare_landing(sim).days == ["2026-10-01", "2026-10-02"]  # never played: the world's days

    def played_until(iso: str) -> list[str]:
        sim.live_played_file.unlink(missing_ok=True)
        end = int(datetime.fromisoformat(iso).timestamp() * 1000)
        Played.record(sim.live_played_file, end - 3_600_000, end, 480.0)
        return prepare_landing(sim).days

    assert played_until("2026-10-05T00:00:00.000Z")[2:] == ["2026-10-03", "2026-10-04"]
    assert played_until("2026-10-05T13:00:00.000Z")[2:] == ["2026-10-03", "2026-10-04"]  # 10-05: a stub
    assert played_until("2026-10-06T00:00:00.000Z")[2:] == ["2026-10-03", "2026-10-04", "2026-10-05"]
