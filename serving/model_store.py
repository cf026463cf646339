"""The champion of each surface, loaded from the MLflow registry and swapped atomically.

`refresh()` asks the registry which version the alias points at; a new one is loaded and served at
once with LightGBM, then compiled (seconds, cached on disk by model hash) and swapped again. A swap
is one reference assignment: a request reads `current(surface)` once and scores with that model to
the end, so nothing is dropped or mixed. A registry that cannot be reached, or a model that fails to
load or compile, leaves the serving model in place (and is counted). No champion at all: `current`
is None and the scorer serves the affinity/recency heuristic, saying so in the response
(`heuristic_reason`: `no_champion` once the registry answered that no version holds the alias, i.e.
no challenger has passed the promotion gate yet; `registry_unreachable` before it ever answered).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.config import SURFACES, CascadeConfig, ModelConfig
from serving.scoring_model import ScoringModel, compiled_model, lightgbm_model
from training.models import Ranker

logger = logging.getLogger(__name__)
NO_CHAMPION, REGISTRY_UNREACHABLE = "no_champion", "registry_unreachable"

# surface -> (registered model name, version) the alias points at, or None; and a loader by version
VersionLookup = Callable[[str], str | None]
RankerLoader = Callable[[str, str], Ranker]


@dataclass
class SurfaceState:
    model: ScoringModel | None = None
    resolved: bool = False  # the registry answered at least once (model or no model)
    compile_failed: str | None = None  # version whose compilation failed (served by LightGBM)
    errors: int = 0


class ModelStore:
    def __init__(self, lookup: VersionLookup, loader: RankerLoader, model_cfg: ModelConfig,
                 cascade: CascadeConfig, compile_dir: Path, on_swap: Callable[[str, ScoringModel | None], None] | None = None):
        self._lookup, self._loader = lookup, loader
        self.cfg, self.cascade, self.compile_dir = model_cfg, cascade, Path(compile_dir)
        self._state = {s: SurfaceState() for s in SURFACES}
        self._on_swap = on_swap or (lambda surface, model: None)
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the request path ---------------------------------------------------------------------
    def current(self, surface: str) -> ScoringModel | None:
        return self._state[surface].model

    def missing_reason(self, surface: str) -> str:
        """Why `current(surface)` is None: the registry said there is no champion, or never answered."""
        return NO_CHAMPION if self._state[surface].resolved else REGISTRY_UNREACHABLE

    def ready(self) -> bool:
        """Every surface resolved, and (when configured) on the compiled engine or known not to be."""
        for st in self._state.values():
            if not st.resolved:
                return False
            if (self.cfg.ready_requires_compiled and self.cfg.engine == "compiled" and st.model is not None
                    and st.model.engine != "compiled" and st.compile_failed != st.model.version):
                return False
        return True

    def status(self) -> dict[str, dict]:
        return {s: {"model": st.model.label if st.model else None, "engine": st.model.engine if st.model else None,
                    "resolved": st.resolved, "errors": st.errors} for s, st in self._state.items()}

    # --- the lifecycle ------------------------------------------------------------------------
    def refresh(self) -> None:
        """One look at the registry for every surface; loads and compiles what moved."""
        with self._refresh_lock:
            for surface in SURFACES:
                self._refresh(surface)

    def _refresh(self, surface: str) -> None:
        st = self._state[surface]
        name = self.cfg.name(surface)
        try:
            version = self._lookup(name)
        except Exception:  # noqa: BLE001 - registry down: keep serving what we have
            st.errors += 1
            logger.exception("registry lookup failed for %s; keeping %s", name, st.model and st.model.label)
            return
        if version is None:
            if st.model is not None or not st.resolved:
                logger.warning("%s has no %s (no challenger passed the promotion gate yet, or the alias was "
                               "removed); serving the heuristic", name, self.cfg.alias)
            self._swap(surface, None)
            st.resolved = True
            return
        current = st.model
        if current is not None and current.version == version and (
            current.engine == self.cfg.engine or st.compile_failed == version
        ):
            st.resolved = True
            return
        try:
            ranker = self._loader(name, version)
            trees = self.cascade.first_stage_trees if self.cascade.enabled else None
            if current is None or current.version != version:
                self._swap(surface, lightgbm_model(name, version, ranker, self.cfg.threads, trees))
                st.resolved = True
            if self.cfg.engine == "compiled":
                try:
                    self._swap(surface, compiled_model(name, version, ranker, self.compile_dir, self.cfg.threads, trees))
                except Exception:  # noqa: BLE001 - no compiler, bad model: LightGBM keeps serving
                    st.compile_failed = version
                    st.errors += 1
                    logger.exception("compiling %s:%s failed; serving it with LightGBM", name, version)
        except Exception:  # noqa: BLE001 - a model that fails to load never replaces a working one
            st.errors += 1
            logger.exception("loading %s:%s failed; keeping %s", name, version, current and current.label)
        st.resolved = True

    def _swap(self, surface: str, model: ScoringModel | None) -> None:
        self._state[surface].model = model  # one reference assignment: atomic for readers
        self._on_swap(surface, model)
        if model is not None:
            logger.info("serving %s for %s (%s)", model.label, surface, model.engine)

    def start(self) -> None:
        """Resolve the champions now, then poll the registry every `poll_s` in the background."""
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.cfg.poll_s)

    def stop(self) -> None:
        self._stop.set()


def registry_lookup(client, alias: str) -> VersionLookup:
    from training.tracking import version_by_alias

    def lookup(name: str) -> str | None:
        version = version_by_alias(client, name, alias)
        return None if version is None else str(version.version)

    return lookup


def registry_loader(client) -> RankerLoader:
    from training.tracking import load_run_ranker

    def load(name: str, version: str) -> Ranker:
        return load_run_ranker(client.get_model_version(name, version).run_id)

    return load
