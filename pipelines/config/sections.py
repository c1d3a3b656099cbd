"""``baselines``, ``register`` and ``tracking``: the small sections."""

from __future__ import annotations

from pydantic import Field

from pipelines.config._base import Section


class BaselinesConfig(Section):
    """``mtlflow baselines``: one single-task model per task, and for tables one gradient-boosted
    model per task, for Δm (README "Baselines")."""

    enabled: bool = Field(
        False, description="train them in `dvc repro`/`mtlflow run` (one training per task)"
    )
    # On by default: it costs seconds per task next to a network's minutes, runs only when
    # `enabled` does, and is the reference a table's user would otherwise have to build alone.
    gradient_boosting: bool = Field(
        True,
        description="also fit scikit-learn's HistGradientBoosting* per task when every input is "
        "a table (skipped with a note for images and signals)",
    )


class RegisterConfig(Section):
    model_name: str = "mtlflow-defects"
    alias: str = "champion"


class TrackingConfig(Section):
    uri: str = Field("sqlite:///mlflow.db", description="overridden by MLFLOW_TRACKING_URI")
    experiment: str = "mtlflow"
