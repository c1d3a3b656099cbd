"""``tasks``: what each label is (kind, column, classes) and what it needs in training."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from mtl_models.augment.effects import task_sensitivity
from mtl_models.losses import ClassWeighting
from mtl_models.tasks import TaskKind
from pipelines.config._base import Section
from pipelines.config.data import ColumnRef


class TaskConfig(Section):
    kind: TaskKind
    column: ColumnRef | None = None
    n_classes: int | None = Field(None, ge=2)
    # label values by class index, for labels written as names (e.g. [Adelie, Chinstrap,
    # Gentoo]); sets n_classes. Without it, labels are the integers 0..n_classes-1.
    classes: list[str] | None = Field(None, min_length=2)
    # Augmentation effects this label does not survive, beyond its kind's defaults:
    # a list (any amount changes the label) or {effect: largest tolerated magnitude}.
    sensitive_to: dict[str, float] = Field(default_factory=dict)
    invariant_to: list[str] = Field(default_factory=list, description="lifts kind defaults")
    # class imbalance, per task; unset = train.class_weighting / train.focal_gamma
    class_weighting: ClassWeighting | None = None
    focal_gamma: float | None = Field(None, ge=0)

    @field_validator("sensitive_to", mode="before")
    @classmethod
    def _list_means_none_tolerated(cls, value: Any) -> Any:
        return dict.fromkeys(value, 0.0) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _known_effects(self) -> TaskConfig:
        self.sensitivity()  # raises naming an unknown or contradictory effect
        return self

    def sensitivity(self) -> dict[str, float]:
        return task_sensitivity(self.kind, self.sensitive_to, self.invariant_to)

    @model_validator(mode="after")
    def _classes_match_kind(self) -> TaskConfig:
        if self.classes is not None:
            if self.kind is TaskKind.REGRESSION:
                raise ValueError("a regression task takes no classes")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be distinct, got {self.classes}")
            if self.n_classes not in (None, len(self.classes)):
                raise ValueError(
                    f"n_classes {self.n_classes} but {len(self.classes)} classes are named"
                )
            object.__setattr__(self, "n_classes", len(self.classes))
        if self.kind in (TaskKind.CLASSIFICATION, TaskKind.ORDINAL) and self.n_classes is None:
            raise ValueError(f"{self.kind.value} tasks need n_classes")
        if self.kind is TaskKind.REGRESSION and self.n_classes is not None:
            raise ValueError("a regression task takes no n_classes")
        if self.kind is TaskKind.BINARY and self.n_classes not in (None, 2):
            raise ValueError("a binary task has n_classes 2")
        if self.kind is TaskKind.REGRESSION and (
            self.class_weighting not in (None, "none") or self.focal_gamma
        ):
            raise ValueError("a regression task takes no class_weighting or focal_gamma")
        return self

