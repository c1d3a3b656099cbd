"""``tasks``: what each label is (kind, column, classes) and what it needs in training."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from mtl_models.augment.effects import task_sensitivity
from mtl_models.kinds import KINDS, article, get_kind
from mtl_models.losses import ClassWeighting
from pipelines.config._base import Section
from pipelines.config.data import ColumnRef


class TaskConfig(Section):
    # a kind registered in mtl_models.kinds.KINDS (checked at validation time, so a kind
    # registered at run time is accepted)
    kind: str
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

    @field_validator("kind")
    @classmethod
    def _registered_kind(cls, value: str) -> str:
        KINDS.get(value)  # an unknown kind fails listing the registered ones
        return value

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
    def _fields_match_kind(self) -> TaskConfig:
        kind = get_kind(self.kind)
        n_classes = kind.check(self.kind, self.n_classes, self.classes)
        object.__setattr__(self, "n_classes", n_classes if self.classes else self.n_classes)
        if not kind.weighs_classes and (
            self.class_weighting not in (None, "none") or self.focal_gamma
        ):
            raise ValueError(f"{article(self.kind)} task takes no class_weighting or focal_gamma")
        return self

    def class_weighting_or(self, default: ClassWeighting) -> ClassWeighting:
        """The task's class weighting: its own, else ``default`` (the ``train`` section's);
        ``none`` for a kind that weighs no classes."""
        if not get_kind(self.kind).weighs_classes:
            return "none"
        return self.class_weighting or default

    def focal_gamma_or(self, default: float) -> float:
        """The task's focal gamma: its own, else ``default``; 0 for a kind without one."""
        if not get_kind(self.kind).weighs_classes:
            return 0.0
        return self.focal_gamma if self.focal_gamma is not None else default
