"""Which arm of the live A/B a viewer is in: a stable hash of (salt, viewer id), computed once per
request by the service (serving.app), never by its callers.

    u = first 8 bytes of SHA-256("<salt>:<viewer id>"), big-endian, / 2**64      (uniform in [0, 1))
    arm = treatment if u < treatment_share else control

The viewer id is the int64 the service is called with, in decimal: a team's string ids are mapped
to it by data.ids before the call (`python -m serving arm U123 42` prints both ids' arms; any
language with SHA-256 can do the same). One cut of one hash: raising the share only moves
viewers from control to treatment, never back, so a ramp keeps everyone it already treated; a new
salt draws a new split, independent of the last (the usual per-experiment salt of Statsig, GrowthBook
and the like). The unit is the viewer, not the request: a viewer sees one arm on every surface and
every page, so what one arm teaches them does not leak into the other's sessions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from serving.config import ExperimentConfig

CONTROL, TREATMENT = "control", "treatment"
ARMS = (CONTROL, TREATMENT)
_SCALE = float(2**64)


def unit_interval(salt: str, viewer_id: int) -> float:
    """The viewer's place in [0, 1) for this salt."""
    digest = hashlib.sha256(f"{salt}:{int(viewer_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


@dataclass(frozen=True)
class ArmAssigner:
    """The experiment's split (no experiment: everyone in the control arm, `experiment` None)."""

    config: ExperimentConfig

    @property
    def experiment(self) -> str | None:
        return self.config.name if self.config.enabled else None

    def arm(self, viewer_id: int) -> str:
        cfg = self.config
        if not cfg.enabled:
            return CONTROL
        return TREATMENT if unit_interval(cfg.hash_salt, viewer_id) < cfg.treatment_share else CONTROL
