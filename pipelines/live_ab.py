"""make live's A/B: the serving config LOUPE_LIVE_AB starts the service with, and what the live run
records of the experiment (docs/live_mode.md). Live mode measures whatever arms the service
assigns; this only writes the service's [experiment] for the common case, one treatment on both
surfaces, half the viewers each."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import tomli_w

from data.settings import Settings
from serving.config import DEFAULT_PATH as SERVING_CONFIG
from serving.config import SURFACES, ServingConfig

LIVE_AB_SHARE = 0.5  # half each: the narrowest interval on the lift for the sessions played


def ab_serving_config(settings: Settings) -> Path:
    """LOUPE_LIVE_AB: the serving config in use (LOUPE_SERVING_CONFIG, else the shipped one) with
    an [experiment] whose treatment serves LOUPE_LIVE_TREATMENT on both surfaces, written under
    LOUPE_HOME/serving/ for the service to read. The experiment is named after the treatment (a new
    treatment, a new split: its salt is its name); a treatment the config refuses fails here, before
    the service starts."""
    with open(settings.serving_config or SERVING_CONFIG, "rb") as f:
        raw = tomllib.load(f)
    treatment = settings.live_treatment
    raw["experiment"] = {"enabled": True, "name": "live-" + re.sub(r"[^A-Za-z0-9_.\-]+", "-", treatment).strip("-"),
                         "treatment_share": LIVE_AB_SHARE,
                         "treatment": {f"{surface}_model": treatment for surface in SURFACES}}
    ServingConfig.from_dict(raw)
    path = settings.home / "serving" / "live_ab.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(raw))
    return path


def describe(serving: ServingConfig) -> str:
    """One line: the experiment, its split, what each arm serves."""
    e = serving.experiment
    treatment = ", ".join(f"{k} {v}" for k, v in e.treatment.describe().items()) or "as the control (an A/A test)"
    control = ", ".join(f"{s} {serving.model.ref(s)}" for s in SURFACES)
    return f"{e.name}: treatment {e.treatment_share:.0%} of viewers ({treatment}); control {control}"


def experiment_params(serving: ServingConfig) -> dict[str, str | float | bool]:
    """What the A/B was: the service's [experiment] and the control's models (none when it is off)."""
    e = serving.experiment
    if not e.enabled:
        return {"experiment": "none"}
    return {"experiment": e.name, "experiment_salt": e.hash_salt, "treatment_share": e.treatment_share,
            **{f"control_{s}_model": str(serving.model.ref(s)) for s in SURFACES},
            **{f"treatment_{k}": v for k, v in e.treatment.describe().items()}}
