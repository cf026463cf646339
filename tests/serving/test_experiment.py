"""The live A/B's config and assignment: model references as the config writes them, the arm a
viewer gets (the documented hash, recomputed here with hashlib alone), stable, close to the share,
monotone in the share, independent across salts; off by default."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data.ids import INT64_MAX, to_id
from data.typed_config import ConfigError
from serving.__main__ import print_arms
from serving.arm_models import treatment_targets
from serving.config import ExperimentConfig, ServingConfig
from serving.experiment import CONTROL, TREATMENT, ArmAssigner
from serving.model_ref import ModelRef

viewer_ids = st.integers(min_value=0, max_value=INT64_MAX)
shares = st.floats(min_value=0.0, max_value=1.0)


def documented_arm(salt: str, viewer_id: int, share: float) -> str:
    """serving/experiment.py's docstring, as a team would write it in their own notebook."""
    u = int(hashlib.sha256(f"{salt}:{viewer_id}".encode()).hexdigest()[:16], 16) / 2**64
    return TREATMENT if u < share else CONTROL


def assigner(share: float = 0.5, salt: str = "s1", name: str = "exp") -> ArmAssigner:
    return ArmAssigner(ExperimentConfig(enabled=True, name=name, salt=salt, treatment_share=share))


def test_off_by_default_everyone_is_the_control():
    cfg = ServingConfig.load()
    assert not cfg.experiment.enabled and treatment_targets(cfg) == {}
    off = ArmAssigner(cfg.experiment)
    assert off.experiment is None and {off.arm(v) for v in range(1000)} == {CONTROL}


@given(viewer_ids, shares, st.text(min_size=0, max_size=20))
def test_the_arm_is_the_documented_hash_and_never_changes(viewer, share, salt):
    a = assigner(share, salt)
    assert a.arm(viewer) == documented_arm(salt or "exp", viewer, share)  # "" salt: the name
    assert assigner(share, salt).arm(viewer) == a.arm(viewer) == a.arm(viewer)  # another process, again


@given(viewer_ids, shares, shares)
def test_raising_the_share_never_moves_a_treated_viewer_back(viewer, s1, s2):
    low, high = sorted((s1, s2))
    if assigner(low).arm(viewer) == TREATMENT:
        assert assigner(high).arm(viewer) == TREATMENT


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5, 0.9])
def test_the_split_is_close_to_the_share(share):
    n = 40_000
    treated = sum(assigner(share).arm(v) == TREATMENT for v in range(1, n + 1))
    assert abs(treated / n - share) <= 5 * math.sqrt(share * (1 - share) / n)  # 5 sd: the hash, not luck


def test_string_ids_mapped_by_data_ids_split_alike():
    """A team's "U123" reaches the service as data.ids' int64 (in the hashed range): it splits too."""
    n = 20_000
    ids = [to_id(f"U{i}") for i in range(n)]
    treated = sum(assigner(0.5).arm(v) == TREATMENT for v in ids)
    assert abs(treated / n - 0.5) <= 5 * math.sqrt(0.25 / n)


def test_a_new_salt_draws_an_independent_split():
    n = 20_000
    first, second = assigner(0.5, "one"), assigner(0.5, "two")
    same = sum(first.arm(v) == second.arm(v) for v in range(n))
    assert abs(same / n - 0.5) <= 5 * math.sqrt(0.25 / n)  # independent: agree half the time


@given(st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True), st.integers(min_value=1, max_value=10**6))
def test_model_references_read_back_as_written(name, version):
    for text in (f"@{name}", f"{name}@{name}", f":{version}", f"{name}:{version}", "heuristic"):
        assert str(ModelRef.parse(text)) == text
    assert ModelRef.parse(f"@{name}").for_model("feed_ranker") == ModelRef("feed_ranker", alias=name)
    assert ModelRef.parse(f"x:{version}").for_model("feed_ranker") == ModelRef("x", version=str(version))


def test_the_treatment_is_read_from_the_file_and_a_bad_one_is_refused_by_its_key():
    cfg = ServingConfig.from_dict({"experiment": {"enabled": True, "name": "v2-home", "treatment_share": 0.2,
                                                  "treatment": {"home_model": "feed_ranker_v2@champion",
                                                                "explore_model": "heuristic"}}})
    assert treatment_targets(cfg) == {"home": ModelRef("feed_ranker_v2", alias="champion")}  # heuristic: no store
    assert cfg.experiment.treatment.describe() == {"home_model": "feed_ranker_v2@champion",
                                                   "explore_model": "heuristic"}
    for bad, key in (({"treatment": {"home_model": "champion"}}, "experiment.treatment.home_model"),
                     ({"treatment": {"home_model": ":0"}}, "experiment.treatment.home_model"),
                     ({"treatment_share": 1.5}, "experiment.treatment_share"),
                     ({"name": "a b"}, "experiment.name"),
                     ({"treatment": {"ranker": "x"}}, "[experiment.treatment] unknown keys ['ranker']")):
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
            ServingConfig.from_dict({"experiment": {"enabled": True, **bad}})


def test_the_cli_prints_each_ids_arm_as_the_service_assigns_it(tmp_path, capsys):
    config = tmp_path / "serving.toml"
    config.write_text('[experiment]\nenabled = true\nname = "cli"\nsalt = "s"\ntreatment_share = 0.5\n')
    assert print_arms(["42", "U123"], config) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# experiment: cli"
    assert lines[1:] == [f"{t}\t{to_id(t)}\t{documented_arm('s', to_id(t), 0.5)}" for t in ("42", "U123")]
    assert print_arms(["4.5"], config) == 1  # not an id: said, and the exit status says so
