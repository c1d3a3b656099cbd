"""``model``: backbone, split point and heads."""

from __future__ import annotations

from pydantic import Field, model_validator

from mtl_models.nn.backbones import BACKBONES
from pipelines.config._base import Section


class BackboneConfig(Section):
    # auto: cnn for one image input, cnn1d for one signal, mlp for features, fusion for several
    name: str = "auto"
    width: int = Field(32, ge=1)
    depth: int = Field(4, ge=1, le=8)

    @model_validator(mode="after")
    def _known(self) -> BackboneConfig:
        if self.name != "auto":
            BACKBONES.get(self.name)  # raises, listing the available backbones
        return self


class ModelConfig(Section):
    backbone: BackboneConfig = BackboneConfig()
    shared_depth: int | None = Field(None, ge=0, description="blocks shared by all tasks")
    head_hidden: int = Field(64, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _split_inside_backbone(self) -> ModelConfig:
        if self.shared_depth is not None and self.shared_depth > self.backbone.depth:
            raise ValueError(
                f"shared_depth {self.shared_depth} exceeds backbone.depth {self.backbone.depth}"
            )
        return self

