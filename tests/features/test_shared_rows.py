"""Kept rows of shared views: positions, growth, generations, and threads adding at once."""

import threading

import numpy as np

from features.online.layout import TS_MISSING
from features.online.shared_rows import KeptRows, Rows, SharedRows


def rows_for(entities: list[int], k: int = 3) -> Rows:
    """Rows whose every value says which entity they belong to; odd entities have no record."""
    rows = Rows.empty(len(entities), k)
    for i, e in enumerate(entities):
        if e % 2 == 0:
            rows.values[i] = e
            rows.missing[i] = False
            rows.ts[i] = e * 10
            rows.found[i] = True
    return rows


def assert_rows_of(kept: KeptRows, entities: list[int]) -> None:
    at = kept.positions(entities)
    assert (at >= 0).all()
    rows = kept.rows
    for e, p in zip(entities, at.tolist(), strict=True):
        if e % 2 == 0:
            assert (rows.values[p] == e).all() and not rows.missing[p].any()
            assert rows.ts[p] == e * 10 and rows.found[p]
        else:
            assert np.isnan(rows.values[p]).all() and rows.missing[p].all()
            assert rows.ts[p] == TS_MISSING and not rows.found[p]


def test_positions_are_minus_one_until_added_and_rows_survive_growth():
    kept = KeptRows(k=3, capacity=4)
    assert kept.positions([1, 2]).tolist() == [-1, -1]
    first = list(range(6))
    assert kept.add(first, rows_for(first)).tolist() == list(range(6))  # past the capacity of 4
    more = list(range(100, 140))
    kept.add(more, rows_for(more))
    assert_rows_of(kept, first + more)
    assert kept.positions([7, 3, 139]).tolist() == [-1, 3, 45]


def test_threads_adding_at_once_never_see_a_position_without_its_row():
    """Each thread adds its own entities (growing the arrays many times) and reads back everything
    any thread has added so far: every position found points at that entity's row."""
    kept = KeptRows(k=2, capacity=1)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait()
            for step in range(50):
                mine = [t * 10_000 + step * 20 + i for i in range(20)]
                kept.add(mine, rows_for(mine, k=2))
                known = [e for e in list(kept.index) if e % 2 == 0]
                at = kept.positions(known)
                rows = kept.rows  # read after the positions, as the reader does
                assert (rows.values[at, 0] == np.array(known, dtype=np.float32)).all()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert kept.n == 4 * 50 * 20
    assert_rows_of(kept, list(kept.index))


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_generation_lasts_its_time_or_its_limit():
    clock = Clock()
    shared = SharedRows({"post": 3, "author": 2}, ttl_ms=1_000, limit=10, clock=clock)
    generation = shared.current()
    assert set(generation) == {"post", "author"}
    generation["post"].add([1, 2], rows_for([1, 2]))
    clock.now += 0.999
    assert shared.current() is generation
    clock.now += 0.001
    later = shared.current()
    assert later is not generation and later["post"].positions([1]).tolist() == [-1]
    later["author"].add(list(range(10)), rows_for(list(range(10)), k=2))  # the limit reached
    assert shared.current() is not later
