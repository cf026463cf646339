"""Training resources: MLflow tracking and registry, the ranker training config."""

from __future__ import annotations

import dagster as dg

from data.settings import Settings


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking + registry: SQLite under LOUPE_HOME by default, or a server URL."""

    tracking_uri: str
    artifact_root: str = ""

    def client(self):
        from training.tracking import connect

        return connect(self.tracking_uri, self.artifact_root or None)


class TrainingConfigResource(dg.ConfigurableResource):
    """Where the ranker training config lives (training/config.toml by default)."""

    path: str = ""

    def load(self):
        from training.config import DEFAULT_PATH, TrainingConfig

        return TrainingConfig.load(self.path or DEFAULT_PATH)


def training_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The training domain's resources, from settings."""
    return {
        "mlflow": MlflowResource(tracking_uri=settings.tracking_uri, artifact_root=str(settings.mlflow_artifact_root)),
        "training_config": TrainingConfigResource(path=str(settings.training_config or "")),
    }
