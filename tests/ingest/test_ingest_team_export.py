"""The ingest assets on a team's export (string ids, clicks and views, its own vocabulary, 2019), run
through Dagster with real Spark: ids consistent across logs, both checks pass; a forced id collision
fails the blocking `ids_distinct` check and names the colliding texts."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from data.contracts import LOG_TYPES
from data.ids import to_id
from data.settings import Settings
from data.vocabulary import load_vocabulary
from pipelines.defs.ingest.assets import ingest_assets
from pipelines.partitions import materialize_day, register_days
from pipelines.resources import build_resources
from tests.builders import engagement, follow, impression, post, user, write_jsonl

pytestmark = pytest.mark.spark

D1, D2 = "2019-03-04", "2019-03-05"


def at(day: str, hour: int) -> str:
    return f"{day}T{hour:02d}:00:00.000Z"


def landing_folder(landing: Path, users: list[dict]) -> None:
    """A two-day export: accounts and posts on day 1, graph and events (clicks, views, a team's own
    `upvote`, one `superlike` nobody declared) on day 2; no blocks, as many exports; and no stories
    log at all (not even a folder: features.optional_logs)."""
    write_jsonl(landing, "users", D1, users)
    write_jsonl(landing, "posts", D1, [post("P-a", "U2", at(D1, 2)), post("P-b", "U1", at(D1, 3))])
    write_jsonl(landing, "follows", D2, [follow("U1", "U2", at(D2, 1)), follow("U2", "U1", at(D2, 1))])
    ev = dict(viewer="U1", post_id="P-a", author_id="U2", ts=at(D2, 10), request_id="r1")
    write_jsonl(landing, "engagements", D2, [
        engagement("e1", **{**ev, "type": "click"}), engagement("e2", **{**ev, "type": "view"}),
        engagement("e3", **{**ev, "type": "upvote"}), engagement("e4", **{**ev, "type": "superlike"}),
    ])
    write_jsonl(landing, "impressions", D2, [
        impression("r1", "U1", "P-a", at(D2, 9), source="other", propensity=0.5),
        impression("r2", "U2", "P-b", at(D2, 9), source="in_network"),
    ])
    for log in LOG_TYPES:
        if log == "stories":
            continue
        for day in (D1, D2):
            if not (landing / log / day).exists():
                write_jsonl(landing, log, day, [])


def team_settings(tmp_path: Path) -> Settings:
    vocabulary = tmp_path / "vocabulary.toml"
    shipped = Path(load_vocabulary().source).read_text()
    vocabulary.write_text(shipped.replace(
        "[engagement_types]\n", '[engagement_types]\nupvote = { role = "positive", head = "upvote" }\n'))
    return Settings(home=tmp_path / "loupe", source="landing", landing=tmp_path / "export",
                    vocabulary=vocabulary, world="tiny")


def materialize(settings: Settings) -> dict[tuple[str, str], dict]:
    """Every ingest asset for both days; per (log, day): metadata, and each check's pass and metadata."""
    out: dict[tuple[str, str], dict] = {}
    with dg.DagsterInstance.ephemeral() as instance:
        register_days(instance, [D1, D2])
        for day in (D1, D2):
            result = materialize_day(ingest_assets, partition_key=day, instance=instance,
                                    resources=build_resources(settings), raise_on_error=False)
            for event in result.get_asset_materialization_events():
                meta = {k: v.value for k, v in event.materialization.metadata.items()}
                out.setdefault((event.asset_key.path[-1], day), {})["meta"] = meta
            for check in result.get_asset_check_evaluations():
                entry = out.setdefault((check.asset_key.path[-1], day), {})
                entry[check.check_name] = (check.passed, {k: v.value for k, v in check.metadata.items()})
    return out


def test_a_team_export_lands_with_consistent_ids_and_passing_checks(tmp_path):
    settings = team_settings(tmp_path)
    landing_folder(settings.landing_dir, [user("U1", at(D1, 1)), user("U2", at(D1, 1))])

    runs = materialize(settings)

    assert not (settings.landing_dir / "stories").exists()
    assert len(runs) == len(LOG_TYPES) * 2
    for (log, day), run in runs.items():
        assert run["reconciles"][0] and run["ids_distinct"][0], (log, day, run)
    # the log the export does not carry lands as empty partitions: read nothing, landed nothing
    for day in (D1, D2):
        meta = runs[("stories", day)]["meta"]
        assert (meta["rows_read"], meta["rows_landed"], meta["source_files"]) == (0, 0, [])
    assert pq.read_table(settings.lake_dir / "stories").num_rows == 0
    lake = settings.lake_dir
    u1, u2 = to_id("U1"), to_id("U2")
    assert sorted(pq.read_table(lake / "users").column("user_id").to_pylist()) == sorted([u1, u2])
    engagements = pq.read_table(lake / "engagements").to_pandas()
    assert sorted(engagements["type"]) == ["click", "upvote", "view"]  # the team's vocabulary
    assert set(engagements["viewer_id"]) == {u1} and set(engagements["post_id"]) == {to_id("P-a")}
    impressions = pq.read_table(lake / "impressions").to_pandas().set_index("request_id")
    assert impressions.loc["r1", "propensity"] == 0.5 and impressions.loc["r2", "viewer_id"] == u2
    day2 = runs[("engagements", D2)]["meta"]
    assert day2["quarantined_by_reason"] == {"bad_enum:type": 1}
    assert day2["unknown_enum_values"] == {"type": {"superlike": 1}}
    assert day2["ids_mapped"] == 3  # viewer U1, post P-a, author U2
    assert runs[("users", D1)]["meta"]["ids_mapped"] == 2


def test_a_forced_collision_fails_the_blocking_check_naming_both_texts(tmp_path):
    settings = team_settings(tmp_path)
    twin = to_id("U2")  # a native integer id equal to U2's hash
    landing_folder(settings.landing_dir, [user("U1", at(D1, 1)), user("U2", at(D1, 1)), user(twin, at(D1, 2))])

    runs = materialize(settings)

    passed, meta = runs[("users", D1)]["ids_distinct"]
    assert not passed and meta["collisions"] == 1
    assert meta["colliding_ids"][0]["originals"] == sorted(["U2", str(twin)])
    assert runs[("users", D1)]["reconciles"][0]  # the counts still add up: the check is what stops it
    # blocking: nothing that depends on users ran that day
    assert {log for log, day in runs if day == D1} == {"users"}
    # a later day carrying U2 fails too; one without it passes
    assert not runs[("follows", D2)]["ids_distinct"][0]
    assert runs[("users", D2)]["ids_distinct"][0]
