"""``baselines``, ``register`` and ``tracking``: the small sections."""

from __future__ import annotations

import posixpath
import re

from pydantic import Field, field_validator

from pipelines.config._base import Section

# MLflow's own rules (mlflow/utils/validation.py), checked when params are read rather than
# at the end of a stage: ``_validate_model_alias_name`` and its reserved names,
# ``_validate_model_name`` (plus the file store's ``%``) and ``_validate_experiment_name``
ALIAS = re.compile(r"^[\w\-]+$")
VERSION_ALIAS = re.compile(r"^[vV]\d+$")
MAX_ALIAS, MAX_EXPERIMENT = 255, 500


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
    alias: str = Field("champion", max_length=MAX_ALIAS)

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("a registered model needs a name, got an empty one")
        bad = sorted({c for c in name if c in "/:%"})
        if bad:
            raise ValueError(f"a registered model name cannot hold {' or '.join(bad)}")
        normal = posixpath.normpath(name)
        if normal != name or normal == "." or normal.startswith(".."):
            raise ValueError(f"a registered model name must not read as a path ({normal!r})")
        return name

    @field_validator("alias")
    @classmethod
    def _alias(cls, alias: str) -> str:
        if not ALIAS.match(alias):
            raise ValueError(
                "an alias may only hold letters, digits, underscores (_) and dashes (-)"
            )
        if alias.lower() == "latest" or VERSION_ALIAS.match(alias):
            raise ValueError(f"'{alias}' is reserved by MLflow (latest, v1, v2, ...)")
        return alias


class TrackingConfig(Section):
    uri: str = Field("sqlite:///mlflow.db", description="overridden by MLFLOW_TRACKING_URI")
    experiment: str = Field("mtlflow", min_length=1, max_length=MAX_EXPERIMENT)
