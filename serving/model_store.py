"""The champion of each surface, loaded from the MLflow registry and swapped atomically.

`refresh()` asks the registry which version the alias points at; a new one is loaded and served at
once with LightGBM, then compiled (seconds, cached on disk by model hash) and swapped again. A swap
is one reference assignment: a request reads `current(surface)` once and scores with that model to
the end, so nothing is dropped or mixed.

"No champion" and "the registry is broken" are different outcomes. Only the registry's answer that
no version holds the alias (serving.model_store relies on training.tracking.version_by_alias for
it) takes the champion away: `current` is None and the scorer serves the affinity/recency heuristic,
saying so (`heuristic_reason: no_champion`, declared, not degraded). A registry that cannot be
reached or read, or a champion that fails to load, is a fault: the serving model stays, and
`fault(surface)` says what happened and what serves instead, which every response reports as
`degraded: registry` (serving.stages.model_scorer).

Every champion loaded from the registry is also kept on disk (serving.champion_cache: its files
beside its compiled libraries, and a manifest with name, version and feature names). A process that
starts while the registry is down serves that champion (compiled from the cache, no registry
needed) or, with none kept, the heuristic (`heuristic_reason: registry_unreachable`), and is ready:
a fault is a known state; only a surface whose first look at the registry has not ended yet is not.

What a store serves per surface is a `ModelRef` (default: [model]'s registered model at its alias,
the champion). An experiment's treatment arm has a store of its own with its own references
(serving.arm_models), kept on disk under its own role, so it never overwrites the champion's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.champion_cache import CHAMPION, ChampionCache
from serving.config import SURFACES, CascadeConfig, ModelConfig
from serving.model_ref import ModelRef
from serving.scoring_model import ScoringModel, compiled_model, lightgbm_model
from training.models import Ranker

logger = logging.getLogger(__name__)
NO_CHAMPION, REGISTRY_UNREACHABLE = "no_champion", "registry_unreachable"

# a model reference -> the version it names (None: the registry answers that there is none: no such
# model, no version holds the alias, no such version)
VersionLookup = Callable[[ModelRef], str | None]
# (registered model name, version) -> that version's ranker
RankerLoader = Callable[[str, str], Ranker]


@dataclass
class SurfaceState:
    model: ScoringModel | None = None
    resolved: bool = False  # the registry answered at least once (model or no model)
    fault: str | None = None  # why what serves may not be the registry's champion; None: in step
    from_disk: bool = False  # the model is the champion kept on disk (the registry has not answered)
    compile_failed: str | None = None  # version whose compilation failed (served by LightGBM)
    errors: int = 0


class ModelStore:
    def __init__(self, lookup: VersionLookup, loader: RankerLoader, model_cfg: ModelConfig,
                 cascade: CascadeConfig, compile_dir: Path,
                 on_swap: Callable[[str, ScoringModel | None], None] | None = None,
                 targets: dict[str, ModelRef] | None = None, role: str = CHAMPION):
        """`targets`: surface -> what it serves, each naming its registered model (default: every
        surface's [model] name at [model] alias). `role`: what the models kept on disk are kept as."""
        self._lookup, self._loader = lookup, loader
        self.cfg, self.cascade, self.compile_dir = model_cfg, cascade, Path(compile_dir)
        self.targets = targets if targets is not None else {s: model_cfg.ref(s) for s in SURFACES}
        self.kept = ChampionCache(self.compile_dir, role)
        self._state = {s: SurfaceState() for s in self.targets}
        self._on_swap = on_swap or (lambda surface, model: None)
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the request path ---------------------------------------------------------------------
    def current(self, surface: str) -> ScoringModel | None:
        return self._state[surface].model

    def missing_reason(self, surface: str) -> str:
        """Why `current(surface)` is None: the registry answered that there is no champion, or it
        cannot be reached or read now (or has not been yet)."""
        st = self._state[surface]
        return NO_CHAMPION if st.resolved and st.fault is None else REGISTRY_UNREACHABLE

    def fault(self, surface: str) -> str | None:
        """What went wrong with the registry or the champion's loading, and what serves instead;
        None while what serves is what the registry says."""
        st = self._state[surface]
        if st.fault is None:
            return None
        model = st.model
        serving = "the heuristic" if model is None else model.label + (" kept on disk" if st.from_disk else "")
        return f"{st.fault}; serving {serving}"

    def problem(self, surface: str) -> str | None:
        """What went wrong with the registry or the loading, alone (`fault` adds what serves instead)."""
        return self._state[surface].fault

    def ready(self) -> bool:
        """Every surface settled: the registry answered, or failed (a fault is a known state: the
        champion kept on disk or the heuristic serves); and (when configured) on the compiled engine
        or known not to be."""
        for st in self._state.values():
            if not st.resolved and st.fault is None:
                return False
            if (self.cfg.ready_requires_compiled and self.cfg.engine == "compiled" and st.model is not None
                    and st.model.engine != "compiled" and st.compile_failed != st.model.version):
                return False
        return True

    def status(self) -> dict[str, dict]:
        return {s: {"model": st.model.label if st.model else None, "engine": st.model.engine if st.model else None,
                    "resolved": st.resolved, "fault": self.fault(s), "from_disk": st.from_disk,
                    "errors": st.errors} for s, st in self._state.items()}

    # --- the lifecycle ------------------------------------------------------------------------
    def refresh(self) -> None:
        """One look at the registry for every surface; loads and compiles what moved."""
        with self._refresh_lock:
            for surface in self.targets:
                self._refresh(surface)

    def _refresh(self, surface: str) -> None:
        st = self._state[surface]
        target = self.targets[surface]
        name = target.name
        try:
            version = self._lookup(target)
        except Exception as exc:  # noqa: BLE001 - registry down or broken: keep serving what we have
            st.errors += 1
            (logger.exception if st.fault is None else logger.warning)(
                "registry lookup failed for %s (%s: %s); keeping %s", target, type(exc).__name__, exc,
                st.model and st.model.label)
            if st.model is None and not st.resolved:
                self._serve_kept(surface)  # a fresh start: the champion kept on disk, if any
            st.fault = f"registry unreachable ({type(exc).__name__})"
            return
        if version is None:
            if st.model is not None or not st.resolved:
                logger.warning("the registry has no %s (for a champion: no challenger passed the promotion gate "
                               "yet, or the alias was removed); serving none for %s", target, surface)
            self.swap(surface, None)
            self._forget_kept(surface)
            st.resolved, st.fault, st.from_disk = True, None, False
            return
        current = st.model
        if current is not None and current.version == version and current.name == name and (
            current.engine == self.cfg.engine or st.compile_failed == version
        ):
            st.resolved, st.fault, st.from_disk = True, None, False
            return
        try:
            ranker = self._loader(name, version)
            trees = self.cascade.first_stage_trees if self.cascade.enabled else None
            if current is None or current.version != version or current.name != name:
                self.swap(surface, lightgbm_model(name, version, ranker, self.cfg.threads, trees))
                st.from_disk = False
                self._keep(surface, name, version, ranker)
            if self.cfg.engine == "compiled":
                try:
                    compiled = compiled_model(name, version, ranker, self.compile_dir, self.cfg.threads, trees)
                    self.swap(surface, compiled)
                except Exception:  # no compiler, bad model: LightGBM keeps serving
                    st.compile_failed = version
                    st.errors += 1
                    logger.exception("compiling %s:%s failed; serving it with LightGBM", name, version)
            st.fault, st.from_disk = None, False
        except Exception as exc:  # a model that fails to load never replaces a working one
            st.errors += 1
            logger.exception("loading %s:%s failed; keeping %s", name, version, current and current.label)
            st.fault = f"champion {name}:{version} failed to load ({type(exc).__name__})"
        st.resolved = True

    def _serve_kept(self, surface: str) -> None:
        """Serve the champion kept on disk by an earlier process (compiled from the cache when so
        configured: its libraries are there, no compiler run), if there is one for this model."""
        st = self._state[surface]
        try:
            found = self.kept.load(surface)
        except Exception:  # an unreadable cache: the heuristic serves
            logger.exception("the champion kept on disk for %s cannot be read", surface)
            return
        if found is None:
            return
        kept, ranker = found
        target = self.targets[surface]
        if kept.name != target.name or (kept.target and kept.target != str(target)):
            logger.warning("the model kept for %s is %s:%s (kept for %s), not %s; not serving it", surface,
                           kept.name, kept.version, kept.target or "?", target)
            return
        trees = self.cascade.first_stage_trees if self.cascade.enabled else None
        model = None
        if self.cfg.engine == "compiled":
            try:
                model = compiled_model(kept.name, kept.version, ranker, self.compile_dir, self.cfg.threads, trees)
            except Exception:  # LightGBM serves it
                st.compile_failed = kept.version
                logger.exception("compiling the kept %s:%s failed; serving it with LightGBM", kept.name, kept.version)
        if model is None:
            model = lightgbm_model(kept.name, kept.version, ranker, self.cfg.threads, trees)
        self.swap(surface, model)
        st.from_disk = True
        logger.warning("the registry cannot be read: serving %s for %s, kept on disk %s", model.label, surface,
                       kept.kept_at)

    def _keep(self, surface: str, name: str, version: str, ranker: Ranker) -> None:
        try:
            self.kept.save(surface, name, version, ranker, str(self.targets[surface]))
        except Exception:  # serving goes on; only a restart without registry loses it
            logger.exception("keeping %s:%s on disk failed", name, version)

    def _forget_kept(self, surface: str) -> None:
        try:
            self.kept.forget(surface)
        except OSError:
            logger.exception("forgetting the champion kept for %s failed", surface)

    def swap(self, surface: str, model: ScoringModel | None) -> None:
        """Serve `model` for `surface` (None: the heuristic serves) until the next swap."""
        self._state[surface].model = model  # one reference assignment: atomic for readers
        self._on_swap(surface, model)
        if model is not None:
            logger.info("serving %s for %s (%s)", model.label, surface, model.engine)

    def start(self) -> None:
        """Start the poller thread and return at once: its first refresh resolves the champions
        (`ready()` is False until each surface has settled), then one every `poll_s`."""
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.cfg.poll_s)

    def stop(self) -> None:
        self._stop.set()


def registry_lookup(client) -> VersionLookup:
    from training.tracking import version_by_alias, version_by_number

    def lookup(ref: ModelRef) -> str | None:
        if ref.alias is not None:
            version = version_by_alias(client, ref.name, ref.alias)
        else:
            version = version_by_number(client, ref.name, ref.version)
        return None if version is None else str(version.version)

    return lookup


def registry_loader(client) -> RankerLoader:
    from training.tracking import load_run_ranker

    def load(name: str, version: str) -> Ranker:
        return load_run_ranker(client.get_model_version(name, version).run_id)

    return load
