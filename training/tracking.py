"""MLflow: one run per trained ranker (params, feature service and list, partitions, metrics,
plots, the model with signature and input example), the registry (`feed_ranker` /
`explore_ranker`, aliases `challenger` and `champion`) and the logged promotion decisions.

The logged model is a pyfunc (training/ranker_pyfunc.py, logged as code) wrapping LightGBM text
models plus `ranker.json`, so `mlflow.pyfunc.load_model("models:/feed_ranker@champion")` scores a
DataFrame of the feature service's columns, and serving can load the raw boosters (`load_ranker`)
to compile them.
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
import threading
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from data.settings import quiet_mlflow
from training.models import Ranker
from training.ranker_pyfunc import RANKER_ARTIFACT

CHALLENGER, CHAMPION = "challenger", "champion"
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"  # the registry's answer "there is no such model"
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
PACKAGE_DIR = Path(__file__).resolve().parent
PYFUNC_CODE = PACKAGE_DIR / "ranker_pyfunc.py"
# What the logged model needs to load and score (training/ranker_pyfunc.py and the training package
# it imports), said rather than inferred, at the versions installed here (uv.lock's), so the logged
# model names the environment it was trained in. MLflow adds its own pin. Inferring them instead
# imports the model in a subprocess (~18-60 s per logged model on a busy 2-core box) and warns when
# the environment has no pip (uv's has none).
MODEL_PACKAGES = ("lightgbm", "numpy", "pandas", "scipy")


def model_conda_env() -> dict:
    """The logged model's environment: this Python and MODEL_PACKAGES at their installed versions."""
    return {
        "name": "loupe-ranker",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip",
                         {"pip": [f"{name}=={installed_version(name)}" for name in MODEL_PACKAGES]}],
    }


def experiment_name(surface: str) -> str:
    return f"loupe/{surface}_ranker"


_artifact_root: Path | None = None


def connect(tracking_uri: str, artifact_root: str | None = None) -> MlflowClient:
    """Point MLflow at the workspace. Experiments created from here keep their artifacts under
    `artifact_root` (else MLflow would write ./mlruns wherever the process happens to run)."""
    global _artifact_root
    quiet_mlflow()
    # MLflow's INFO lines (creating the database tables, validating the input example) are not for
    # Loupe's console; its warnings still show.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    _artifact_root = Path(artifact_root) if artifact_root else None
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


class LazyClient:
    """An MlflowClient made on first use, and again on the next use after a failed attempt.

    Making the client opens the stores (with SQLite: reads the schema), so a registry that is down
    or corrupt when a process starts would fail the process; the ranking service must start anyway
    (serving the champion it kept on disk, or its heuristic), so its calls fail instead, one by one,
    and succeed once the registry is back."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None):
        self.tracking_uri, self.artifact_root = tracking_uri, artifact_root
        self._client: MlflowClient | None = None
        self._lock = threading.Lock()

    def client(self) -> MlflowClient:
        with self._lock:
            if self._client is None:
                self._client = connect(self.tracking_uri, self.artifact_root)
            return self._client

    def __getattr__(self, name: str):
        return getattr(self.client(), name)


def use_experiment(name: str) -> None:
    if mlflow.get_experiment_by_name(name) is None and _artifact_root is not None:
        slug = name.replace("/", "_")
        mlflow.create_experiment(name, artifact_location=(_artifact_root / slug).resolve().as_uri())
    mlflow.set_experiment(name)


def log_ranker_run(
    *,
    surface: str,
    ranker: Ranker,
    params: dict,
    days: dict[str, list[str]],
    valid_ndcg10: float,
    input_example: pd.DataFrame,
    feature_service: str,
    tags: dict[str, str] | None = None,
) -> str:
    """A finished MLflow run holding the trained ranker (its features from `feature_service`);
    returns its run id."""
    use_experiment(experiment_name(surface))
    with mlflow.start_run(run_name=f"{surface}-{ranker.kind}-{days['test'][0]}") as run:
        mlflow.set_tags({"surface": surface, "kind": ranker.kind, "test_day": days["test"][0],
                         "feature_service": feature_service, **(tags or {})})
        mlflow.log_params({**params, "kind": ranker.kind, "feature_service": feature_service,
                           "n_features": len(ranker.feature_names),
                           **{f"days_{k}": ",".join(v) for k, v in days.items()},
                           **{f"best_iteration.{k}": v for k, v in ranker.best_iterations.items()}})
        mlflow.log_metric("valid_ndcg10_realised", valid_ndcg10)
        mlflow.log_dict({"feature_service": feature_service, "features": ranker.feature_names,
                         "partitions": days}, "features.json")
        example = input_example[ranker.feature_names].astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            path = ranker.save(Path(tmp) / RANKER_ARTIFACT)
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_CODE),
                artifacts={RANKER_ARTIFACT: str(path)},
                code_paths=[str(PACKAGE_DIR)],
                conda_env=model_conda_env(),
                signature=infer_signature(example, ranker.predict(example.to_numpy(np.float32))),
                input_example=example.head(5),
            )
        return run.info.run_id


def register(client: MlflowClient, model_name: str, run_id: str, tags: dict[str, str]) -> ModelVersion:
    """Register the run's model and point the `challenger` alias at it.

    The version's source is the logged model itself (`models:/<model id>`): MLflow 3 keeps a logged
    model's files with the model, not under the run, so a `runs:/<run>/model` source is resolved to
    it anyway, with a warning per registration."""
    model_id = logged_model_id(client, run_id)
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != ALREADY_EXISTS:
            raise
    version = client.create_model_version(model_name, f"models:/{model_id}", run_id=run_id, tags=tags,
                                          model_id=model_id)
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return version


def logged_model_id(client: MlflowClient, run_id: str) -> str:
    """The id of the model `log_ranker_run` logged in the run (one per run)."""
    outputs = client.get_run(run_id).outputs
    ids = [output.model_id for output in (outputs.model_outputs if outputs else [])]
    if len(ids) != 1:
        raise MlflowException(f"run {run_id} logged {len(ids)} models, expected one")
    return ids[0]


def version_by_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version `alias` points at, or None when the registry *answers* that there is none: no such
    registered model (RESOURCE_DOES_NOT_EXIST), or the model has no such alias. Anything else (a
    registry that cannot be reached, a corrupt or unreadable store, denied access) raises: "no
    champion" is an answer, never a guess. (MLflow's own `get_model_version_by_alias` reports a
    missing alias as INVALID_PARAMETER_VALUE, the code of many other failures, hence the aliases.)"""
    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == NOT_FOUND:
            return None
        raise
    version = (model.aliases or {}).get(alias)
    if version is None:
        return None
    return client.get_model_version(model_name, str(version))


def version_by_number(client: MlflowClient, model_name: str, version: str) -> ModelVersion | None:
    """That version of the model, or None when the registry answers that there is no such model or
    version (RESOURCE_DOES_NOT_EXIST); anything else raises, as in `version_by_alias`."""
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        if exc.error_code == NOT_FOUND:
            return None
        raise


def load_ranker(client: MlflowClient, model_name: str, alias: str) -> tuple[Ranker, ModelVersion] | None:
    """The raw Ranker behind an alias (None when the alias is not set; a registry fault raises)."""
    version = version_by_alias(client, model_name, alias)
    if version is None:
        return None
    return load_run_ranker(version.run_id), version


def load_run_ranker(run_id: str) -> Ranker:
    with tempfile.TemporaryDirectory() as tmp:
        root = mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/model", dst_path=tmp)
        found = next(Path(root).rglob("ranker.json"))
        return Ranker.load(found.parent)


def log_evaluation(run_id: str, report: dict, name: str, figures: dict) -> None:
    """Test-day metrics of the run's ranker (prefixed test_), the full report, and figures."""
    from training import plots

    # Resuming a run needs its own experiment active (the other surface's may be).
    mlflow.set_experiment(experiment_id=mlflow.get_run(run_id).info.experiment_id)
    with mlflow.start_run(run_id=run_id):
        ours = report["rankers"][name]
        mlflow.log_metrics({f"test_{k}": v for k, v in ours.items() if np.isfinite(v)})
        for base in ("chronological", "popularity", "affinity", "random", "oracle"):
            for metric in ("ndcg10", "ndcg10_realised"):  # the gate compares realised NDCG
                value = report["rankers"].get(base, {}).get(metric, float("nan"))
                if np.isfinite(value):
                    mlflow.log_metric(f"baseline_{base}_{metric}", value)
        for key in ("pct_of_oracle", "lift_vs_chronological_pct"):
            if key in report and np.isfinite(report[key]):
                mlflow.log_metric(key, report[key])
        for head, m in report.get("heads", {}).get(name, {}).items():
            mlflow.log_metrics({f"test_{head}_{k}": m[k] for k in ("auc", "logloss") if np.isfinite(m[k])})
            if np.isfinite(m["calibration"]["ece"]):
                mlflow.log_metric(f"test_{head}_ece", m["calibration"]["ece"])
        mlflow.log_dict(report, "evaluation.json")
        for file, fig in figures.items():
            mlflow.log_figure(fig, file)
            plots.close(fig)


def log_decision(client: MlflowClient, model_name: str, version: str, decision: dict) -> None:
    """The promotion decision with every number it compared (challenger, baselines, champion):
    tags on the challenger version and a run."""
    for key, value in decision.items():
        client.set_model_version_tag(model_name, version, f"promotion.{key}", str(value))
    use_experiment("loupe/promotions")
    with mlflow.start_run(run_name=f"{model_name}-v{version}-{decision['test_day']}"):
        mlflow.set_tags({"model": model_name, "challenger_version": version,
                         "promoted": str(decision["promoted"]), "reason": decision["reason"]})
        mlflow.log_metrics({k: v for k, v in decision.items()
                            if k.endswith("_metric") and isinstance(v, float) and np.isfinite(v)})
        mlflow.log_dict(json.loads(json.dumps(decision, default=str)), "decision.json")


def promote(client: MlflowClient, model_name: str, version: str) -> None:
    client.set_registered_model_alias(model_name, CHAMPION, version)


def log_ab_test(result: dict) -> None:
    use_experiment("loupe/ab_tests")
    with mlflow.start_run(run_name=f"{result['model_name']}-v{result['version']}-{result['test_day']}"):
        mlflow.set_tags({"model": result["model_name"], "version": result["version"], "test_day": result["test_day"]})
        for column in ("engagements", "value"):
            m = result[column]
            mlflow.log_metrics({f"{column}_lift_pct": m["lift_pct"], f"{column}_ci95_low_pct": m["ci95_pct"][0],
                                f"{column}_ci95_high_pct": m["ci95_pct"][1],
                                f"{column}_per_session_treatment": m["per_session_treatment"],
                                f"{column}_per_session_control": m["per_session_control"]})
        mlflow.log_dict(result, "ab_test.json")
