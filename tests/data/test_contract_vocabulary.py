"""Engagement types and impression sources have one source of truth, the log vocabulary: contracts
resolve their enums against the vocabulary given, and the simulator only writes declared names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from data import columns as c
from data.contracts import CONTRACTS, ENGAGEMENTS, IMPRESSIONS
from data.vocabulary import Vocabulary, load_vocabulary
from data.world import realise


def test_the_simulator_writes_only_names_the_shipped_vocabulary_declares():
    shipped = load_vocabulary()
    assert set(realise.ENGAGEMENT_TYPES) <= set(shipped.engagement_names)
    assert set(realise.IMPRESSION_SOURCES) <= set(shipped.impression_sources)


def test_the_old_fixed_tuples_are_gone():
    for name in ("ENGAGEMENT_TYPES", "POSITIVE_ENGAGEMENTS", "NEGATIVE_ENGAGEMENTS", "IMPRESSION_SOURCES"):
        assert not hasattr(c, name), name


def test_contract_enums_come_from_the_vocabulary_given(tmp_path: Path):
    text = Path(load_vocabulary().source).read_text()
    text = text.replace("[engagement_types]\n", '[engagement_types]\nupvote = { role = "positive", head = "upvote" }\n')
    path = tmp_path / "v.toml"
    path.write_text(text)
    custom = Vocabulary.load(path)

    assert "upvote" in ENGAGEMENTS.enum_values(custom)[c.TYPE]
    assert "upvote" not in ENGAGEMENTS.enum_values(load_vocabulary())[c.TYPE]
    assert {"click", "view"} <= set(ENGAGEMENTS.enum_values(load_vocabulary())[c.TYPE])
    assert IMPRESSIONS.enum_values(custom)[c.SOURCE] == custom.impression_sources
    # fixed enums stay the contract's; columns in schema order (the order reasons are judged in)
    assert list(ENGAGEMENTS.enum_values(custom)) == [c.TYPE, c.SURFACE]
    assert CONTRACTS["follows"].enum_values(custom) == {c.ACTION: c.FOLLOW_ACTIONS}


def test_every_id_column_is_int64_and_known_to_the_id_scheme():
    ids = {name for contract in CONTRACTS.values() for name in contract.id_columns}
    assert ids == {c.USER_ID, c.POST_ID, c.AUTHOR_ID, c.VIEWER_ID, c.FOLLOWER_ID, c.FOLLOWEE_ID,
                   c.BLOCKER_ID, c.BLOCKED_ID, c.STORY_ID}
    for contract in CONTRACTS.values():
        for name in contract.id_columns:
            assert str(contract.schema.field(name).type) == "int64", (contract.name, name)


def test_contracts_and_ids_import_without_settings_or_spark():
    code = ("import sys, data.contracts, data.ids; "
            "bad = [m for m in ('data.settings', 'pyspark', 'pipelines') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
