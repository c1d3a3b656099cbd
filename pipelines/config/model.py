"""``model``: backbone, split point and heads."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from mtl_models.nn.backbones import BACKBONES
from pipelines.config._base import Section


class BackboneConfig(Section):
    """The backbone by name, its width and depth, and any other argument the named
    backbone's ``__init__`` takes (e.g. ``pool_size`` of ``cnn``), passed on as given."""

    # any other key is the named backbone's own argument, checked against its signature
    model_config = ConfigDict(extra="allow", frozen=True)
    # auto: cnn for one image input, cnn1d for one signal, mlp for features, fusion for several
    name: str = "auto"
    width: int = Field(32, ge=1)
    depth: int = Field(4, ge=1, le=8)

    @model_validator(mode="after")
    def _known(self) -> BackboneConfig:
        extra = sorted(self.model_extra or {})
        if self.name == "auto":
            if extra:
                raise ValueError(
                    f"backbone arguments {extra} need a named backbone, not 'auto'; "
                    f"name one of {BACKBONES.names()}"
                )
            return self
        cls = BACKBONES.get(self.name)  # raises, listing the available backbones
        takes = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = [key for key in extra if key not in takes]
        if unknown:
            raise ValueError(
                f"backbone '{self.name}' takes no {unknown}; it takes {sorted(takes)}"
            )
        return self

    def args(self) -> dict[str, Any]:
        """What reaches the backbone: width, depth and the named backbone's own arguments."""
        return {"width": self.width, "depth": self.depth, **(self.model_extra or {})}


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

