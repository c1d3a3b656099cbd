"""Models-from-code entry: MLflow runs this file to build the served model (nothing pickled)."""

import mlflow

from pipelines.serving import MultiTaskPyfunc

mlflow.models.set_model(MultiTaskPyfunc())
