"""``model``: backbone, its starting weights, split point, architecture and heads."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_type_hints

from pydantic import ConfigDict, Field, create_model, model_validator

from mtl_models.nn.architectures import ARCHITECTURES, MultiTaskModel
from mtl_models.nn.backbones import BACKBONES, ZooBackbone
from pipelines.config._base import Section

# what a zoo backbone takes instead of width and depth (its own size is its architecture's)
_SMALL_ONLY = ("width", "depth")


class BackboneConfig(Section):
    """The backbone by name, its width and depth, any other argument the named backbone's
    ``__init__`` takes (e.g. ``pool_size`` of ``cnn``, ``input_size`` of a zoo network), and
    the weights it starts from."""

    # any other key is the named backbone's own argument, checked against its signature
    model_config = ConfigDict(extra="allow", frozen=True)
    # auto: cnn for one image input, cnn1d for one signal, mlp for features, fusion for
    # several; timm/<name> or torchvision/<name>: a network from that zoo
    name: str = "auto"
    width: int = Field(32, ge=1)
    depth: int = Field(4, ge=1, le=8)
    pretrained: bool = Field(
        False, description="start from the zoo's own weights (torchvision enum, timm hub tag)"
    )
    weights: Path | None = Field(
        None, description="start from a local .safetensors/.pt/.pth file (relative: project)"
    )
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")

    @model_validator(mode="after")
    def _known(self) -> BackboneConfig:
        extra = sorted(self.model_extra or {})
        if self.pretrained and self.weights is not None:
            raise ValueError("pretrained and weights exclude each other; set one")
        if self.sha256 is not None and self.weights is None:
            raise ValueError("sha256 checks a weights file; set weights too")
        if self.weights is not None and self.weights.suffix not in (".safetensors", ".pt", ".pth"):
            raise ValueError(f"weights '{self.weights}': expected .safetensors, .pt or .pth")
        if self.name == "auto":
            if extra or self.pretrained or self.weights is not None:
                raise ValueError(
                    "backbone arguments and weights need a named backbone, not 'auto'; "
                    f"name one of {BACKBONES.names()}"
                )
            return self
        cls = BACKBONES.get(self.name)  # raises, listing the available backbones
        zoo = issubclass(cls, ZooBackbone)
        if zoo and not self.name.partition("/")[2]:
            raise ValueError(f"'{self.name}' names no model; e.g. {self.name}resnet18")
        fields = type(self).model_fields
        given = [k for k in _SMALL_ONLY if getattr(self, k) != fields[k].default]
        if zoo and given:
            raise ValueError(f"backbone '{self.name}' takes no {given}; its size is its own")
        if self.pretrained and not zoo:
            raise ValueError(
                f"backbone '{self.name}' has no library weights; pretrained needs timm/<name> "
                "or torchvision/<name> (or start it from a file with weights:)"
            )
        takes = set(inspect.signature(cls.__init__).parameters) - {"self", "model"}
        unknown = [key for key in extra if key not in takes]
        if unknown:
            raise ValueError(f"backbone '{self.name}' takes no {unknown}; it takes {sorted(takes)}")
        return self

    @property
    def zoo(self) -> bool:
        return self.name != "auto" and issubclass(BACKBONES.get(self.name), ZooBackbone)

    def args(self) -> dict[str, Any]:
        """What reaches the backbone: width, depth (small backbones) and the named
        backbone's own arguments."""
        size = {} if self.zoo else {"width": self.width, "depth": self.depth}
        return {**size, **(self.model_extra or {})}


# what every architecture is built from; its own keyword arguments after these are its
# hyperparameters
_BUILT = frozenset(inspect.signature(MultiTaskModel.__init__).parameters)


def architecture_hyperparameters(cls: type[MultiTaskModel]) -> list[inspect.Parameter]:
    """The typed keyword arguments an architecture takes besides what every one is built
    from (its ``model.architecture`` keys)."""
    return [p for p in inspect.signature(cls.__init__).parameters.values() if p.name not in _BUILT]


class _Architecture(Section):
    def args(self) -> dict[str, Any]:
        """The hyperparameters, as the architecture's keyword arguments."""
        return self.model_dump(exclude={"name"})


def _architecture_union() -> Any:
    """One config model per registered architecture, built from its typed ``__init__`` (as
    the weighting methods are): an architecture added to ``mtl_models.nn.architectures`` is
    configurable, validated and searchable without further code."""
    models = []
    for name, cls in ARCHITECTURES.items():
        hints = get_type_hints(cls.__init__)
        fields: dict[str, Any] = {"name": (Literal[name], ...)}
        for param in architecture_hyperparameters(cls):
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (hints[param.name], default)
        models.append(create_model(f"{cls.__name__}Config", __base__=_Architecture, **fields))
    return Annotated[Union[tuple(models)], Field(discriminator="name")]  # noqa: UP007


ArchitectureConfig = _architecture_union()


class ModelConfig(Section):
    backbone: BackboneConfig = BackboneConfig()
    architecture: ArchitectureConfig = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"name": "hps"},
        validate_default=True,
        description="how the tasks share the backbone: hps, mmoe, cgc, ple, dselect_k, mtan, "
        'cross_stitch (README "Architectures")',
    )
    shared_depth: int | str | None = Field(
        None,
        description="stages shared by all tasks, or the module where the task branches begin "
        "(e.g. features.11); null = all",
    )
    head_hidden: int = Field(64, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _split_inside_backbone(self) -> ModelConfig:
        split = self.shared_depth
        if isinstance(split, int) and split < 0:
            raise ValueError(f"shared_depth must be >= 0, got {split}")
        if self.backbone.zoo:
            return self  # checked against the network when it is built (fitting.preflight)
        if isinstance(split, str):
            raise ValueError(
                f"shared_depth '{split}' names a module; that needs a timm/ or torchvision/ "
                "backbone (small backbones count blocks: an int)"
            )
        if split is not None and split > self.backbone.depth:
            raise ValueError(f"shared_depth {split} exceeds backbone.depth {self.backbone.depth}")
        total = self.backbone.depth
        shared = total if split is None else split
        problem = ARCHITECTURES.get(self.architecture.name).split_problem(shared, total)
        if problem:
            raise ValueError(
                f"architecture.name '{self.architecture.name}' with shared_depth {split} of "
                f"backbone.depth {total}: {problem}"
            )
        return self

    def shares_parameters(self) -> bool:
        """Whether some parameters feed every task (what gradient methods and affinity
        need); a zoo backbone's depth is its own, so a split is judged as sharing a stage."""
        total = self.backbone.depth
        split = self.shared_depth
        shared = total if split is None else (split if isinstance(split, int) else 1)
        return ARCHITECTURES.get(self.architecture.name).shares_parameters(shared, total)
