"""``tune``: the Optuna search (space, sampler, pruner, storage)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.config._base import Section

Scalar = bool | int | float | str | None


class SearchEntry(Section):
    """One tuned parameter: a range (``low``/``high``, optional ``log``/``step``) or ``choices``.

    ``when`` makes it conditional on parameters sampled before it (or fixed in params), e.g.
    ``when: {train.weighting.method: static}``; a list there means any of its values.
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Scalar] | None = None
    type: Literal["int", "float", "categorical"] | None = None
    when: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or raw.get("type") is not None:
            return raw
        if raw.get("choices") is not None:
            return {**raw, "type": "categorical"}
        ints = all(isinstance(raw.get(k), int) for k in ("low", "high"))
        ints = ints and isinstance(raw.get("step", 1), int)
        return {**raw, "type": "int" if ints else "float"}

    @model_validator(mode="after")
    def _valid_range(self) -> SearchEntry:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("choices is empty; list at least one value")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or give choices)")
        if not self.low < self.high:
            raise ValueError(f"empty range: low {self.low:g} must be below high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna samples one or the other)")
        ends = (self.low, self.high, self.step or 1)
        if self.type == "int" and not all(float(v).is_integer() for v in ends):
            raise ValueError("an int range needs whole-number low, high and step")
        return self

    def extremes(self) -> list[Any]:
        """The values whose validity stands for the whole entry (both ends, or every choice)."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in (self.choices or [])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        low, high = float(self.low or 0), float(self.high or 0)
        if not low <= value <= high:
            return False
        if self.step is None:
            return True
        steps = (value - low) / self.step
        return abs(steps - round(steps)) < 1e-9

    def applies(self, values: Mapping[str, Any]) -> bool:
        for key, wanted in self.when.items():
            options = wanted if isinstance(wanted, list) else [wanted]
            if values.get(key) not in options:
                return False
        return True


class SamplerConfig(Section):
    # qmc: a scrambled Sobol sequence, seeded; what it draws never depends on earlier results,
    # so a pruned search trains the same values as the unpruned one, only sooner
    name: Literal["tpe", "qmc", "nsga2", "random"] = "tpe"
    n_startup_trials: int = Field(4, ge=0, description="random trials before TPE models (tpe)")
    population_size: int = Field(8, ge=2, description="individuals per generation (nsga2)")


class PrunerConfig(Section):
    name: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(2, ge=0, description="trials run in full before pruning (median)")
    n_warmup_epochs: int = Field(2, ge=0, description="epochs of a trial never pruned (median)")
    min_resource: int = Field(
        1, ge=1, description="epochs before the first rung (halving, hyperband)"
    )
    reduction_factor: int = Field(
        3, ge=2, description="keep 1 in this many per rung (halving, hyperband)"
    )


# Sections a trial may change; data, split and tasks stay fixed so every trial is comparable.
TUNABLE_SECTIONS = ("model", "train", "augment")


class TuneConfig(Section):
    enabled: bool = True
    n_trials: int = Field(8, ge=1, description="finished trials the study aims for, in total")
    epochs: int = Field(6, ge=1, description="training epochs per trial")
    objective: Literal["mean_score", "per_task"] = "mean_score"
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    seed: int = 0
    # Any SQLAlchemy URL; several `mtlflow tune` processes or machines may share one study.
    storage: str = "sqlite:///optuna.db"
    study_name: str | None = Field(None, description="default: derived from the tuned params")
    heartbeat_seconds: int = Field(
        20, ge=1, description="a trial silent for twice this long is marked failed"
    )
    enqueue_defaults: bool = Field(True, description="trial 0 uses params.yaml's own values")
    search_space: dict[str, SearchEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _hyperband_fits_the_budget(self) -> TuneConfig:
        # Hyperband's brackets run from min_resource to the full budget of `epochs`
        if self.pruner.name == "hyperband" and self.pruner.min_resource > self.epochs:
            raise ValueError(
                f"pruner.min_resource {self.pruner.min_resource} exceeds epochs {self.epochs}: "
                "hyperband needs its first rung within a trial's budget"
            )
        return self
