"""A deterministic simulated Instagram-like world that writes production-like log exports.

    from data.world import generate_world
    summary = generate_world(size="tiny", seed=WORLD_SEED, landing_dir=..., truth_dir=...)

See docs/simulator.md for what it models.
"""

from data.world.config import WORLD_CONFIGS, DirtRates, WorldConfig
from data.world.simulate import WorldSummary, generate_world
from data.world.truth import (
    ACTIONS,
    LONG_DWELL_MS,
    POSITIVE_ACTIONS,
    TRUE_VALUE_WEIGHTS,
    PairState,
    TruthModel,
    examine_probability,
    sample_outcomes,
)

__all__ = [
    "ACTIONS",
    "LONG_DWELL_MS",
    "POSITIVE_ACTIONS",
    "TRUE_VALUE_WEIGHTS",
    "WORLD_CONFIGS",
    "DirtRates",
    "PairState",
    "TruthModel",
    "WorldConfig",
    "WorldSummary",
    "examine_probability",
    "generate_world",
    "sample_outcomes",
]
