"""``augment``: the requested train-time transforms and label remaps."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mtl_models.augment.effects import GROUPS, check_remappable, check_transform
from pipelines.config._base import Section


class TransformEntry(BaseModel):
    """An albumentations transform: ``name``, ``p`` and the transform's own arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    p: float = Field(0.5, ge=0, le=1)

    def args(self) -> dict[str, Any]:
        return {"p": self.p, **(self.model_extra or {})}


class AuditConfig(Section):
    """The empirical label audit (README "Augmentation"): a probe trained without augmentation
    predicts the validation images with and without each kept transform."""

    enabled: bool = Field(False, description="audit in `mtlflow augment` and in `train`")
    epochs: int = Field(5, ge=1, description="the probe's training epochs")
    max_drop: float = Field(
        0.15, gt=0, le=1, description="share of the probe's skill a transform may cost a task"
    )
    repeats: int = Field(2, ge=1, le=10, description="draws of each transform per image")
    seed: int = 0


class AugmentConfig(Section):
    """Requested train-time augmentation; the resolver keeps what every task's label survives."""

    enabled: bool = True
    geometric: list[TransformEntry] = Field(default_factory=list)
    photometric: list[TransformEntry] = Field(default_factory=list)
    noise_blur: list[TransformEntry] = Field(default_factory=list)
    # transform name -> {source task: destination task}, ``*`` patterns allowed
    remaps: dict[str, dict[str, str]] = Field(default_factory=dict)
    preview_samples: int = Field(4, ge=1, le=16, description="rows of the preview grid")
    audit: AuditConfig = AuditConfig()

    @field_validator(*GROUPS)
    @classmethod
    def _known_transforms(cls, entries: list[TransformEntry], info: ValidationInfo) -> Any:
        for i, entry in enumerate(entries):
            try:
                check_transform(entry.name, info.field_name)
            except ValueError as exc:
                raise ValueError(f"[{i}] {exc}") from None
        return entries

    @field_validator("remaps")
    @classmethod
    def _remappable(cls, remaps: dict[str, dict[str, str]]) -> Any:
        for name in remaps:
            check_remappable(name)
        return remaps

    def entries(self) -> list[tuple[str, int, TransformEntry]]:
        return [(g, i, e) for g in GROUPS for i, e in enumerate(getattr(self, g))]
