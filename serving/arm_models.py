"""ArmModels: the model a request's (surface, arm) is scored with.

The control arm (and every request outside an experiment) is served by the champion store, as
before. The treatment arm is served what [experiment.treatment] names for the surface: nothing named,
the control's model; `heuristic`, the heuristic, declared (`heuristic_reason: experiment_arm`, not
degraded); a model reference, that model from a ModelStore of its own (polled, compiled and kept on
disk like the champion, under its own role). A treatment model that cannot be served (no such alias
or version, a registry fault before it ever loaded, a load that failed) degrades the treatment to
the control's model: `degraded: experiment` says what was asked, why it is missing and what serves
instead. The arm stays `treatment` (assigned by the hash, analysed as assigned), so a reader of the
A/B sees those pages as the treatment's, and why they were not what the treatment meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.config import SURFACES, ArmConfig, ServingConfig
from serving.experiment import TREATMENT
from serving.model_ref import ModelRef
from serving.model_store import NO_CHAMPION, ModelStore
from serving.scoring_model import ScoringModel

REGISTRY = "registry"  # reported in `degraded` while the registry is broken (ModelStore.fault)
EXPERIMENT = "experiment"  # reported in `degraded` while the treatment serves the control's model
ARM_HEURISTIC = "experiment_arm"  # heuristic_reason: the arm is configured to serve the heuristic


@dataclass(frozen=True)
class ModelChoice:
    model: ScoringModel | None  # None: the heuristic scores
    missing_reason: str | None  # why there is no model (the response's heuristic_reason)
    degraded: dict[str, str] = field(default_factory=dict)  # what the response reports as degraded


def treatment_targets(config: ServingConfig) -> dict[str, ModelRef]:
    """The registry models the treatment serves, per surface (its store's targets; none: no store)."""
    if not config.experiment.enabled:
        return {}
    refs = {s: config.experiment.treatment.model(s) for s in SURFACES}
    return {s: ref.for_model(config.model.name(s)) for s, ref in refs.items() if ref is not None and not ref.heuristic}


class ArmModels:
    def __init__(self, control: ModelStore, treatment: ArmConfig | None = None,
                 treatment_store: ModelStore | None = None):
        """`treatment`: what the treatment arm changes (None: no experiment, one arm);
        `treatment_store`: its models (needed when it names any)."""
        self.control, self.treatment, self.treatment_store = control, treatment, treatment_store

    @property
    def stores(self) -> tuple[ModelStore, ...]:
        return (self.control,) if self.treatment_store is None else (self.control, self.treatment_store)

    def ready(self) -> bool:
        return all(store.ready() for store in self.stores)

    def choose(self, surface: str, arm: str) -> ModelChoice:
        ref = self.treatment.model(surface) if arm == TREATMENT and self.treatment is not None else None
        if ref is None:
            return self._control(surface)
        if ref.heuristic:
            return ModelChoice(None, ARM_HEURISTIC)
        store = self.treatment_store
        model = store.current(surface) if store is not None else None
        if model is not None:
            fault = store.fault(surface)
            return ModelChoice(model, None, {REGISTRY: f"treatment: {fault}"} if fault else {})
        control = self._control(surface)
        serving = control.model.label if control.model is not None else "the heuristic"
        why = f"treatment {self._target(surface, ref)}: {self._missing(surface)}; serving the control's {serving}"
        return ModelChoice(control.model, control.missing_reason, {**control.degraded, EXPERIMENT: why})

    def _control(self, surface: str) -> ModelChoice:
        store = self.control
        fault = store.fault(surface)
        model = store.current(surface)
        return ModelChoice(model, None if model is not None else store.missing_reason(surface),
                           {REGISTRY: fault} if fault else {})

    def _target(self, surface: str, ref: ModelRef) -> ModelRef:
        store = self.treatment_store
        return store.targets[surface] if store is not None and surface in store.targets else ref

    def _missing(self, surface: str) -> str:
        store = self.treatment_store
        if store is None or surface not in store.targets:
            return "no model store for it"  # a wiring error: the app was built without the treatment's store
        if store.missing_reason(surface) == NO_CHAMPION:
            return "the registry has no such model, alias or version"
        return store.problem(surface) or "not loaded yet"
