"""The logged ranker's MLflow pyfunc, logged as code (MLflow's "models from code").

`training.tracking.log_ranker_run` logs this file beside the ranker's artifacts; loading the model
(`mlflow.pyfunc.load_model("models:/feed_ranker@champion")`) runs it, and `set_model` below hands
MLflow the model. Nothing is pickled: a pickled `PythonModel` object would tie the logged model to
this process's classes and, loaded, could run arbitrary code (MLflow warns on every log).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from training.models import Ranker

RANKER_ARTIFACT = "ranker"  # the artifact that holds the saved Ranker (its LightGBM text models)


class RankerModel(mlflow.pyfunc.PythonModel):
    """pyfunc face of a Ranker: DataFrame of feature columns -> scores."""

    def load_context(self, context) -> None:
        self.ranker = Ranker.load(Path(context.artifacts[RANKER_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.ranker.predict(self.ranker.matrix(model_input))


mlflow.models.set_model(RankerModel())
