"""Vectorised helpers: seeded RNG streams, time, id and key encodings, group operations."""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

from data.days import DAY_MS, HOUR_MS, MINUTE_MS


# --- randomness -------------------------------------------------------------------------------
def rng_for(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """An independent Generator per (seed, named stream, day, chunk, ...).

    Every random draw hangs off a key that does not depend on how much was drawn before, so a
    change in one part of the simulation does not reshuffle every other part, and the output is
    byte-identical for a given seed.
    """
    entropy = [int(seed), zlib.crc32(stream.encode()), *(int(k) + 1 for k in keys)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


# --- time --------------------------------------------------------------------------------------
def _fixed_width_strings(chars: np.ndarray) -> pa.StringArray:
    """(n, w) uint8 ASCII matrix -> arrow strings, without a Python object per row."""
    n, w = chars.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def format_ts(ms: np.ndarray) -> pa.StringArray:
    """Epoch ms -> '2026-10-01T08:15:30.123Z' (ISO-8601 UTC with milliseconds)."""
    ms = np.asarray(ms, dtype=np.int64)
    days, msod = np.divmod(ms, DAY_MS)
    # Few distinct days: format each date of the range once, then look them up.
    lo = int(days.min()) if len(days) else 0
    inv = days - lo
    span = np.arange(lo, lo + (int(inv.max()) + 1 if len(days) else 1))
    dates = np.datetime_as_string(span.astype("datetime64[D]"), unit="D").astype("S10")
    date_chars = np.frombuffer(dates.tobytes(), dtype=np.uint8).reshape(-1, 10)
    out = np.empty((len(ms), 24), dtype=np.uint8)
    out[:, :10] = date_chars[inv]
    h, rem = np.divmod(msod, HOUR_MS)
    m, rem = np.divmod(rem, MINUTE_MS)
    s, milli = np.divmod(rem, 1000)
    zero = ord("0")
    out[:, 10] = ord("T")
    out[:, 11], out[:, 12] = zero + h // 10, zero + h % 10
    out[:, 13] = ord(":")
    out[:, 14], out[:, 15] = zero + m // 10, zero + m % 10
    out[:, 16] = ord(":")
    out[:, 17], out[:, 18] = zero + s // 10, zero + s % 10
    out[:, 19] = ord(".")
    out[:, 20], out[:, 21], out[:, 22] = (
        zero + milli // 100,
        zero + milli // 10 % 10,
        zero + milli % 10,
    )
    out[:, 23] = ord("Z")
    return _fixed_width_strings(out)


# --- ids -----------------------------------------------------------------------------------------
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SHIFTS = np.arange(60, -4, -4, dtype=np.uint64)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijection on uint64: distinct inputs give distinct, random-looking outputs."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hex_ids(seed: int, tag: int, day: int, chunk: int, counter: np.ndarray) -> pa.StringArray:
    """Deterministic, unique 16-hex-digit ids (request_id, event_id).

    (tag, day, chunk, counter) is packed into distinct bit fields, xor-ed with the seed and mixed
    by a bijection, so ids never collide within a world and differ between seeds.
    """
    packed = (
        (np.uint64(tag) << np.uint64(60))
        | (np.uint64(day) << np.uint64(48))
        | (np.uint64(chunk) << np.uint64(32))
        | np.asarray(counter, dtype=np.uint64)
    )
    salt = np.uint64(int(splitmix64(np.array([seed], dtype=np.uint64))[0]) & 0x0FFF_FFFF_FFFF_FFFF)
    mixed = splitmix64(packed ^ salt)
    nibbles = (mixed[:, None] >> _SHIFTS[None, :]) & np.uint64(15)
    return _fixed_width_strings(_HEX[nibbles.astype(np.intp)])


# --- pair keys and sorted-set membership ----------------------------------------------------------
def pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a, b) -> one int64 (ids are < 2**31), so pair sets are sorted int64 arrays."""
    return (np.asarray(a, dtype=np.int64) << 32) | np.asarray(b, dtype=np.int64)


def key_src(k: np.ndarray) -> np.ndarray:
    return (k >> 32).astype(np.int64)


def key_dst(k: np.ndarray) -> np.ndarray:
    return (k & 0xFFFFFFFF).astype(np.int64)


def lookup(sorted_keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of q in sorted_keys and whether each is present."""
    if len(sorted_keys) == 0:
        return np.zeros(len(q), dtype=np.int64), np.zeros(len(q), dtype=bool)
    pos = np.searchsorted(sorted_keys, q)
    pos_c = np.minimum(pos, len(sorted_keys) - 1)
    return pos_c, sorted_keys[pos_c] == q


def isin_sorted(sorted_keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    return lookup(sorted_keys, q)[1]


# --- groups ---------------------------------------------------------------------------------------
def rank_in_groups(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within runs of equal values of an already grouped (sorted) array."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(n)
    start = np.empty(n, dtype=bool)
    start[0] = True
    start[1:] = groups[1:] != groups[:-1]
    return idx - np.maximum.accumulate(np.where(start, idx, 0))


def expand(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [start, start+count): (index of the range, element) for every element."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(np.asarray(starts, dtype=np.int64), counts) + offset


def csr(groups_sorted: np.ndarray, n_groups: int) -> np.ndarray:
    """indptr of a CSR layout for rows sorted by group id in [0, n_groups)."""
    return np.searchsorted(groups_sorted, np.arange(n_groups + 1))


# --- diurnal cycle -------------------------------------------------------------------------------
def _diurnal_weights() -> np.ndarray:
    # Local-time activity per minute: low at night, a morning commute bump, lunch, a big evening.
    minutes = np.arange(1440) / 60.0
    w = 0.08 * np.ones(1440)
    for mu, sd, h in ((8.0, 1.2, 0.55), (12.7, 1.3, 0.6), (20.5, 2.0, 1.0), (17.5, 1.5, 0.35)):
        w += h * np.exp(-0.5 * ((minutes - mu) / sd) ** 2)
    w[(minutes >= 1.0) & (minutes < 6.0)] *= 0.35
    return np.cumsum(w) / w.sum()


_DIURNAL_CDF = _diurnal_weights()


def sample_local_ms(rng: np.random.Generator, n: int) -> np.ndarray:
    """Milliseconds into the local day, following the diurnal curve."""
    minute = np.searchsorted(_DIURNAL_CDF, rng.random(n))
    return minute.astype(np.int64) * MINUTE_MS + rng.integers(0, MINUTE_MS, n)


def local_to_utc_in_day(local_ms: np.ndarray, utc_offset_min: np.ndarray) -> np.ndarray:
    """Local ms-of-day -> UTC ms-of-day, wrapped so it stays inside the same UTC day."""
    return np.mod(local_ms - utc_offset_min.astype(np.int64) * MINUTE_MS, DAY_MS)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --- sorted sets ----------------------------------------------------------------------------------
# numpy 2.x's hash-based np.unique / union1d are slow on millions of int64 keys; a stable sort
# (radix/timsort, which also exploits already sorted runs) plus an adjacent-difference mask is
# one to two orders of magnitude faster here.
def unique_sorted(x: np.ndarray) -> np.ndarray:
    s = np.sort(np.asarray(x), kind="stable")
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return unique_sorted(np.concatenate([a, b]))


def first_occurrence(keys: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct key, in their original order."""
    order = np.argsort(keys, kind="stable")
    s = keys[order]
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    return np.sort(order[first])


def in_set(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.isin for int keys, via a sorted copy of `values`."""
    return isin_sorted(unique_sorted(values), np.asarray(x))


class AlignedRows:
    """Rows as the aligned NumPy arrays of a dataclass's fields (the first field sets the length):
    a subset of them, and several concatenated."""

    def __len__(self) -> int:
        return len(getattr(self, next(iter(self.__dataclass_fields__))))

    def take(self, rows: np.ndarray):
        return type(self)(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    @classmethod
    def concat(cls, parts: list):
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))
