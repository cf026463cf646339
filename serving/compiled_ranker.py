"""A ranker's LightGBM boosters compiled to native code (treelite → tl2cgen + gcc), same scores.

The ranking service scores up to 1,000 candidates per request on a 2-core box; LightGBM's own
`predict` walks its trees through a generic interpreter, while tl2cgen emits one C function per
model with the thresholds inlined, so scoring runs no interpreter.
Compilation costs seconds per booster, so a compiled model is cached on disk by the hash of its
model text and reused by every later process; callers keep serving with LightGBM until it is ready.
The workers of one service start together and resolve the same champion: a lock file per model
(filelock) lets the first compile it while the others wait and load its libraries, instead of each
running gcc over the same code on the same cores.
Parity with `Booster.predict` is a test (max abs diff ≤ 1e-6 on random inputs with missing values).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tl2cgen
import treelite
from filelock import FileLock
from tl2cgen.libloader import _LIB as TL2CGEN_LIB

from training.heads import value
from training.models import LAMBDARANK, Ranker

logger = logging.getLogger("tl2cgen")

# C translation units per model: gcc compiles them side by side and keeps memory per unit low.
PARALLEL_UNITS = 8


@ctypes.CFUNCTYPE(None, ctypes.c_char_p)
def _native_log(message: bytes) -> None:
    logger.debug(message.decode("utf-8", errors="replace"))


def _log_to_python_logging() -> None:
    """tl2cgen's native library logs each code generation at INFO ("Parallel compilation enabled;
    ...": one line per booster and service worker, 54 in a tiny `make run`) through a callback that
    prints, with no level or verbose switch for it. Its C API (TL2cgenRegisterLogCallback) takes our
    callback instead, which sends the lines to the `tl2cgen` logger at DEBUG; warnings keep
    tl2cgen's own callback. The library keeps one callback per thread (the ranking service compiles
    on a background thread), so this runs before each compilation. `_native_log` stays referenced
    by this module for the life of the process."""
    if TL2CGEN_LIB.TL2cgenRegisterLogCallback(_native_log) != 0:
        raise tl2cgen.TL2cgenError(TL2CGEN_LIB.TL2cgenGetLastError().decode("utf-8"))


def model_hash(ranker: Ranker) -> str:
    """The cache key of a ranker: its boosters' model text (serving.champion_cache keeps it too)."""
    digest = hashlib.sha256()
    for name in sorted(ranker.boosters):
        digest.update(name.encode())
        digest.update(ranker.boosters[name].model_to_string().encode())
    return digest.hexdigest()[:16]


def compile_booster(booster, libpath: Path) -> Path:
    """Compile one booster to a shared library at `libpath` (skipped when it is already there)."""
    if not libpath.exists():
        libpath.parent.mkdir(parents=True, exist_ok=True)
        model = treelite.frontend.from_lightgbm(booster)
        _log_to_python_logging()
        # a unique name, renamed into place: a process that does not hold the lock (another
        # cache dir user, a lock on a filesystem without locks) never loads a half-written library
        tmp = libpath.with_suffix(f".{os.getpid()}.tmp.so")
        tl2cgen.export_lib(model, toolchain="gcc", libpath=str(tmp), params={"parallel_comp": PARALLEL_UNITS})
        tmp.rename(libpath)
    return libpath


@dataclass
class CompiledRanker:
    """Same interface as `training.models.Ranker` for scoring: `predict`, `predict_heads`."""

    ranker: Ranker
    predictors: dict[str, tl2cgen.Predictor]
    model_hash: str

    @classmethod
    def compile(cls, ranker: Ranker, cache_dir: Path, threads: int = 1) -> CompiledRanker:
        key = model_hash(ranker)
        folder = Path(cache_dir) / key
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder.with_name(f"{key}.lock")):  # one process compiles; the others find it built
            libraries = {name: compile_booster(booster, folder / f"{name}.so")
                         for name, booster in ranker.boosters.items()}
        predictors = {name: tl2cgen.Predictor(str(path), nthread=threads) for name, path in libraries.items()}
        return cls(ranker, predictors, key)

    @property
    def feature_names(self) -> list[str]:
        return self.ranker.feature_names

    def _predict(self, name: str, dmat: tl2cgen.DMatrix) -> np.ndarray:
        return self.predictors[name].predict(dmat).reshape(-1)

    def predict_heads(self, x: np.ndarray) -> dict[str, np.ndarray]:
        dmat = tl2cgen.DMatrix(np.ascontiguousarray(x, dtype=np.float32), dtype="float32")
        return {h: self._predict(h, dmat) for h in self.predictors if h != LAMBDARANK}

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.ranker.kind == LAMBDARANK:
            dmat = tl2cgen.DMatrix(np.ascontiguousarray(x, dtype=np.float32), dtype="float32")
            return self._predict(LAMBDARANK, dmat)
        return value(self.ranker.weights, self.predict_heads(x))
