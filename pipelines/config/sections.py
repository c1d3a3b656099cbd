"""``baselines``, ``register`` and ``tracking``: the small sections."""

from __future__ import annotations

from pydantic import Field

from pipelines.config._base import Section


class BaselinesConfig(Section):
    """``mtlflow baselines``: one single-task model per task, for Δm (README "Baselines")."""

    enabled: bool = Field(
        False, description="train them in `dvc repro`/`mtlflow run` (one training per task)"
    )


class RegisterConfig(Section):
    model_name: str = "mtlflow-defects"
    alias: str = "champion"


class TrackingConfig(Section):
    uri: str = Field("sqlite:///mlflow.db", description="overridden by MLFLOW_TRACKING_URI")
    experiment: str = "mtlflow"

