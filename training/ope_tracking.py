"""MLflow record of off-policy evaluations: one run per (model version, test day) in `loupe/ope`,
beside the simulated A/B tests in `loupe/ab_tests` (same run name, so the two line up)."""

from __future__ import annotations

import math

import mlflow

from training.tracking import use_experiment

EXPERIMENT = "loupe/ope"


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def ope_metrics(result: dict) -> dict[str, float]:
    """Flat metrics: `logged.<estimator>.*` (real logs) and `sim.<share>.<estimator>.*` (simulator)."""
    out: dict[str, float] = {}
    logged = result.get("logged")
    if logged and "estimators" in logged:
        for name, e in logged["estimators"].items():
            out.update({f"logged.{name}.lift_pct": e["lift_pct"], f"logged.{name}.ci95_low_pct": e["ci95_pct"][0],
                        f"logged.{name}.ci95_high_pct": e["ci95_pct"][1], f"logged.{name}.treatment": e["treatment"],
                        f"logged.{name}.control": e["control"]})
    sim = result.get("simulated")
    if sim:
        out["sim.ab_lift_pct"] = sim["ab_test"]["lift_pct"]
        out["sim.ab_ci95_low_pct"], out["sim.ab_ci95_high_pct"] = sim["ab_test"]["ci95_pct"]
        out["sim.truth_lift_pct"] = sim["truth_all_sessions"]["lift_pct"]
        for share, block in sim["by_share"].items():
            for name, e in block["estimators"].items():
                prefix = f"sim.share_{share}.{name}"
                out.update({f"{prefix}.lift_pct": e["lift_pct"], f"{prefix}.ci95_low_pct": e["ci95_pct"][0],
                            f"{prefix}.ci95_high_pct": e["ci95_pct"][1],
                            f"{prefix}.inside_ab_ci95": float(e["inside_ab_ci95"])})
    return _finite(out)


def log_ope(result: dict) -> str:
    """A finished run holding the evaluation (metrics + the full result as ope.json); its run id."""
    use_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"{result['model_name']}-v{result['version']}-{result['test_day']}") as run:
        mlflow.set_tags({"model": result["model_name"], "version": result["version"],
                         "test_day": result["test_day"], "surface": result.get("surface", "")})
        mlflow.log_metrics(ope_metrics(result))
        mlflow.log_dict(result, "ope.json")
        return run.info.run_id
