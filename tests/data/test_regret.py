"""Regret (data/world/regret.py): the simulated viewers' memory of what they pushed away, and what
the truth makes of it in live mode."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data.days import DAY_MS
from data.world.regret import HALF_LIFE_DAYS, MEMORY_DAYS, PUSH_WEIGHT, Regret, leave, said_as
from data.world.truth import PairState, PostLatents, TruthModel, UserLatents

NOW = 1_790_000_000_000


def test_a_hide_is_said_in_the_products_words_and_a_report_stays_a_report():
    rng = np.random.default_rng(0)
    words = [said_as(rng, "hide") for _ in range(4_000)]
    shares = {w: words.count(w) / len(words) for w in set(words)}
    assert set(shares) == {"hide", "not_interested", "see_fewer"}
    assert abs(shares["not_interested"] - 0.3) < 0.03 and abs(shares["see_fewer"] - 0.2) < 0.03
    assert {said_as(rng, "report") for _ in range(50)} == {"report"}


def test_pressure_fades_by_half_each_half_life_and_is_forgotten_after_the_memory():
    regret = Regret()
    regret.push(1, 7, "see_fewer", NOW)
    regret.push(1, 7, "hide", NOW)
    authors = np.array([7, 8])
    assert regret.pressure(1, authors, NOW).tolist() == [PUSH_WEIGHT["see_fewer"] + PUSH_WEIGHT["hide"], 0.0]
    later = NOW + int(HALF_LIFE_DAYS * DAY_MS)
    assert np.isclose(regret.pressure(1, authors, later)[0], 1.5)
    assert regret.pressure(1, authors, NOW + (MEMORY_DAYS + 1) * DAY_MS)[0] == 0.0
    assert not regret.pressure(2, authors, NOW).any()  # another viewer pushed nothing away


def test_a_viewer_leaves_after_a_post_they_regret_and_examines_nothing_after():
    examined = np.ones(6, bool)
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    assert leave(rng, examined, np.zeros(6)) is examined
    assert rng.bit_generator.state == state  # no regret on the page: not a single draw
    pressure = np.array([0.0, 0.0, 1e6, 0.0, 0.0, 0.0])  # certain to leave at position 2
    cut = leave(rng, examined, pressure)
    assert cut.tolist() == [True, True, True, False, False, False] and examined.all()
    assert leave(rng, np.zeros(6, bool), pressure).sum() == 0  # an unexamined post is not left at


def test_the_live_part_is_kept_for_the_next_play_and_old_pushes_are_dropped(tmp_path):
    kept = tmp_path / "live" / "regret.npz"
    regret = Regret(kept)
    regret.push(3, 9, "report", NOW - (MEMORY_DAYS + 2) * DAY_MS)  # too old to be remembered
    regret.push(3, 9, "not_interested", NOW)
    regret.keep(NOW)
    again = Regret(kept)
    assert again.pressure(3, np.array([9]), NOW).tolist() == [PUSH_WEIGHT["not_interested"]]
    stamp = kept.stat().st_mtime_ns
    again.keep(NOW)  # nothing new: the file is not rewritten
    assert kept.stat().st_mtime_ns == stamp


def test_the_memory_starts_from_the_worlds_own_hides_and_reports(tmp_path):
    folder = tmp_path / "truth" / "impressions"
    folder.mkdir(parents=True)
    ts = [NOW - DAY_MS, NOW - 2 * DAY_MS, NOW - (MEMORY_DAYS + 1) * DAY_MS, NOW - DAY_MS]
    pq.write_table(pa.table({
        "viewer_id": [1, 1, 1, 2], "author_id": [5, 6, 5, 5],
        "ts": pa.array([datetime.fromtimestamp(t / 1000, UTC) for t in ts], pa.timestamp("ms", tz="UTC")),
        "y_hide": [True, False, True, False], "y_report": [False, True, False, False],
    }), folder / f"{date(2026, 9, 1)}.parquet")
    regret = Regret.load(tmp_path / "truth", None, NOW)
    pressure = regret.pressure(1, np.array([5, 6]), NOW)
    fade = 0.5 ** (1 / HALF_LIFE_DAYS)
    assert np.allclose(pressure, [PUSH_WEIGHT["hide"] * fade, PUSH_WEIGHT["report"] * fade ** 2])
    assert not regret.pressure(2, np.array([5]), NOW).any()  # viewer 2 only saw it
    assert not Regret.load(None, None, NOW).pressure(1, np.array([5]), NOW).any()  # a team's: none


def test_regret_raises_only_the_hide_and_report_chances():
    rng = np.random.default_rng(2)
    users = UserLatents(rng.dirichlet(np.ones(3), 3).astype(np.float32), np.zeros(3, np.float32),
                        np.zeros(3, np.float32))
    posts = PostLatents(np.array([0, 1, 1]), np.full(3, NOW), np.zeros(3, np.int64),
                        rng.dirichlet(np.ones(3), 3).astype(np.float32), np.zeros(3, np.float32))
    truth = TruthModel(users, posts, date(2026, 9, 1), 1, pair_states={0: PairState.empty(), 1: PairState.empty()})
    viewers, post_ids = np.array([2, 2]), np.array([1, 2])
    plain = truth.scores(viewers, post_ids, NOW).probabilities
    none = truth.scores(viewers, post_ids, NOW, regret=np.zeros(2)).probabilities
    sore = truth.scores(viewers, post_ids, NOW, regret=np.array([3.0, 0.0])).probabilities
    for action in plain:
        assert np.array_equal(plain[action], none[action])  # no regret: the truth as it was
    for action in ("hide", "report"):
        assert sore[action][0] > 10 * plain[action][0] and sore[action][1] == plain[action][1]
    for action in ("comment", "share", "save", "profile_visit", "long_dwell"):
        assert np.array_equal(sore[action], plain[action])
