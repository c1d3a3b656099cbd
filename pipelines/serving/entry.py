"""Models-from-code entry: MLflow runs this file to build the served model (nothing pickled).

Inside `mlflow models serve` this is the one piece of our code that runs in the server
process before it builds its app, so the HTTP guards (body limit, one-line errors) are
installed from here; see ``pipelines/serving/guard.py`` for why."""

import mlflow

from pipelines.serving import MultiTaskPyfunc
from pipelines.serving.guard import install

install()
mlflow.models.set_model(MultiTaskPyfunc())
