"""The Open Bandit importer and benchmark on a small source distribution built here with the real
one's layout (no download in tests): rounds of a uniform random and a Bernoulli TS policy whose
click probabilities are known, so the benchmark's truth is known too."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data import columns as c
from data.contracts import CONTRACTS
from data.days import DAY_S
from data.importers import open_bandit as obd
from data.importers.__main__ import main as importer_main
from data.vocabulary import load_vocabulary
from training.open_bandit_ope import bts_action_distribution, evaluate_campaign, rounds_from_landing

N_ITEMS = 5
CTR = np.array([0.05, 0.1, 0.2, 0.3, 0.4])  # click probability of each item at the top position
THETA = np.array([1.0, 0.8, 0.6])  # examination of positions 1..3
ALPHA = np.array([2.0, 3.0, 5.0, 8.0, 12.0])
BETA = np.array([30.0, 25.0, 20.0, 18.0, 15.0])
ROOT = f"obp-{obd.VERSION}/obp"


def rounds(policy: str, n: int, rng: np.random.Generator, dist: np.ndarray) -> pd.DataFrame:
    position = rng.integers(0, 3, n)
    if policy == "random":
        item = rng.integers(0, N_ITEMS, n)
        pscore = np.full(n, 1.0 / N_ITEMS)
    else:  # the item at the round's position, drawn from BTS's own distribution there
        item = np.array([rng.choice(N_ITEMS, p=dist[:, k]) for k in position])
        pscore = dist[item, position]
    click = (rng.random(n) < CTR[item] * THETA[position]).astype(int)
    start = pd.Timestamp("2019-11-24T00:00:00Z")
    ts = start + pd.to_timedelta(np.sort(rng.uniform(0, 3 * DAY_S, n)), unit="s")
    users = rng.integers(0, 7, n)
    frame = pd.DataFrame({
        "timestamp": ts.astype(str), "item_id": item, "position": position + 1, "click": click,
        "propensity_score": pscore,
        **{f"user_feature_{i}": [f"{h:032x}" for h in (users * 7919 + i)] for i in range(4)},
        **{f"user-item_affinity_{a}": 0.0 for a in range(N_ITEMS)},
    })
    return frame


def build_sdist(path: Path, n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dist = bts_action_distribution(ALPHA, BETA, n_sim=20_000, seed=1)
    files = {}
    for campaign in ("men",):
        items = pd.DataFrame({"item_id": range(N_ITEMS), "item_feature_0": rng.normal(size=N_ITEMS),
                              **{f"item_feature_{i}": [f"{i}{a:031x}" for a in range(N_ITEMS)] for i in (1, 2, 3)}})
        for policy in obd.POLICIES:
            files[f"dataset/obd/{policy}/{campaign}/{campaign}.csv"] = rounds(policy, n, rng, dist).to_csv()
            files[f"dataset/obd/{policy}/{campaign}/item_context.csv"] = items.to_csv()
    prior = "men:\n  alpha:\n" + "".join(f"    - {a}\n" for a in ALPHA) + "  beta:\n" + "".join(
        f"    - {b}\n" for b in BETA)
    files["policy/conf/prior_bts.yaml"] = prior
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{ROOT}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dist


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("obd") / obd.SDIST_NAME
    return path, build_sdist(path)


def read(landing: Path, log: str) -> list[dict]:
    files = sorted(landing.glob(f"{log}/*/open_bandit*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_conversion_writes_every_round_in_the_landing_contract(sdist, tmp_path):
    path, _ = sdist
    landing = tmp_path / "landing"
    foreign = landing / "impressions" / "2019-11-24" / "team_export.jsonl"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("theirs\n")
    summary = obd.convert(path, landing, campaigns=("men",))
    vocabulary = load_vocabulary()
    logs = {log: read(landing, log) for log in ("users", "posts", "impressions", "engagements")}
    for log, rows in logs.items():
        assert rows and all(list(r) == CONTRACTS[log].column_names for r in rows), log
        assert all(r[col] is not None for r in rows for col in CONTRACTS[log].required), log
    assert summary.rounds == {"random/men": 4000, "bts/men": 4000}
    assert summary.days == ["2019-11-24", "2019-11-25", "2019-11-26"]

    users = {r[c.USER_ID] for r in logs["users"]}
    posts = {r[c.POST_ID]: r for r in logs["posts"]}
    assert set(posts) == {obd.CAMPAIGN_BASE["men"] + i for i in range(N_ITEMS)}
    assert all(p[c.AUTHOR_ID] in users for p in posts.values())  # every item's shop account exists
    assert len(users) == 7 + N_ITEMS  # 7 user-feature segments, one account per item
    impressions = logs["impressions"]
    assert len(impressions) == 8000 and len({r[c.REQUEST_ID] for r in impressions}) == 8000
    assert {r[c.POSITION] for r in impressions} == {0, 1, 2}
    assert all(r[c.VIEWER_ID] in users and r[c.POST_ID] in posts for r in impressions)
    assert {r[c.SOURCE] for r in impressions} <= set(vocabulary.impression_sources)
    assert {r[c.MODEL_VERSION] for r in impressions} == {"obd-random-men", "obd-bts-men"}
    random_rows = [r for r in impressions if r[c.MODEL_VERSION] == "obd-random-men"]
    assert {r[c.PROPENSITY] for r in random_rows} == {1.0 / N_ITEMS}
    # days follow the real timestamps (2019), and every row sits in its own UTC day's folder
    for f in landing.glob("impressions/*/open_bandit-*.jsonl"):
        assert {json.loads(line)[c.TS][:10] for line in f.read_text().splitlines()} == {f.parent.name}

    clicks = logs["engagements"]
    assert {r[c.TYPE] for r in clicks} == {"click"} and "click" in vocabulary.engagement_names
    assert sum(summary.clicks.values()) == len(clicks)
    by_request = {r[c.REQUEST_ID]: r for r in impressions}
    for e in clicks:
        served = by_request[e[c.REQUEST_ID]]
        assert (e[c.VIEWER_ID], e[c.POST_ID]) == (served[c.VIEWER_ID], served[c.POST_ID])
        assert e[c.TS] > served[c.TS]  # the click follows its impression

    before = {p: p.read_bytes() for p in landing.rglob("*.jsonl")}
    obd.convert(path, landing, campaigns=("men",))  # a rerun rewrites the same files, byte for byte
    assert {p: p.read_bytes() for p in landing.rglob("*.jsonl")} == before
    assert foreign.read_text() == "theirs\n"  # and never touches a file it did not write


def test_bad_sources_get_a_clear_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="make run-open-bandit"):
        obd.OpenBanditSource(tmp_path / "missing.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="not a readable"):
        obd.OpenBanditSource(tmp_path / "junk.tar.gz")
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(ValueError, match="is missing"):
        obd.OpenBanditSource(empty).rounds("random", "men")
    with pytest.raises(SystemExit, match="choose from"):
        importer_main(["open_bandit", "--sdist", str(empty), "--landing", str(tmp_path), "--policies", "greedy"])


def test_bts_action_distribution_is_a_distribution_per_position():
    dist = bts_action_distribution(np.array([1000.0, 1.0, 1.0, 1.0]), np.array([1.0, 50.0, 50.0, 50.0]), n_sim=5000)
    assert dist.shape == (4, 3)
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    assert dist[0, 0] > 0.99  # the item everyone believes in always comes first
    assert np.all(dist.sum(axis=1) <= 1.0 + 1e-9)


def test_the_benchmark_recovers_bts_ctr_from_the_random_policys_rounds(sdist, tmp_path):
    path, dist = sdist
    landing = tmp_path / "landing"
    obd.convert(path, landing, campaigns=("men",))
    frame = rounds_from_landing(landing)
    assert len(frame) == 8000 and set(frame["policy"]) == {"random", "bts"}
    alpha, beta = obd.OpenBanditSource(path).bts_prior("men")
    np.testing.assert_array_equal(alpha, ALPHA)
    result = evaluate_campaign(frame, "men", alpha, beta, n_sim=20_000, replicates=200, seed=1)
    truth = float((dist * CTR[:, None] * THETA[None, :]).sum() / 3)  # positions equally likely
    assert result["bts_on_policy_ctr"]["ci95"][0] < truth < result["bts_on_policy_ctr"]["ci95"][1]
    for name, e in result["estimates"].items():
        assert e["ci95"][0] < truth < e["ci95"][1], name
        assert e["relative_error"] < 0.25, name
    assert result["random_policy_ctr"] < result["bts_on_policy_ctr"]["value"]  # BTS favours the good items


def test_ingestion_parses_every_converted_line_as_valid(spark, sdist, tmp_path):

    from data.ingest.validation import LandingLines, parse_lines

    path, _ = sdist
    landing = tmp_path / "landing"
    obd.convert(path, landing, campaigns=("men",))
    for folder in sorted(p for p in landing.glob("*/*") if p.is_dir()):
        log, day = folder.parent.name, folder.name
        lines = LandingLines.of_file(spark.read.text(str(folder / "*.jsonl")), str(folder), day)
        reasons = {r[c.REASON] for r in parse_lines(lines, CONTRACTS[log]).select(c.REASON).collect()}
        assert reasons == {None}, (log, day, reasons)
