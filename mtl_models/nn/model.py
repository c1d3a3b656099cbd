"""The multi-task network as saved and rebuilt: its spec (backbone, architecture, heads,
inputs) and the functions that build it. The architectures are in
``mtl_models.nn.architectures``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mtl_models.inputs import ImageInput, InputSpec, input_from_dict, input_to_dict
from mtl_models.nn.architectures import ARCHITECTURES, Inputs, MultiTaskModel
from mtl_models.nn.backbones import BACKBONES, Backbone, Fusion
from mtl_models.tasks import TaskSpec

__all__ = ["ModelSpec", "MultiTaskModel", "build_backbone", "build_model", "example_inputs"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model before loading its weights."""

    tasks: tuple[TaskSpec, ...]
    backbone: str = "cnn"
    backbone_args: dict[str, Any] = field(default_factory=dict)
    # None: every backbone block is shared; an int counts stages, a string names the block
    # where the task branches begin (e.g. ``features.11``)
    shared_depth: int | str | None = None
    head_hidden: int = 64
    dropout: float = 0.0
    # how the tasks share the backbone (``ARCHITECTURES``) and its hyperparameters
    architecture: str = "hps"
    architecture_args: dict[str, Any] = field(default_factory=dict)
    image_size: int = 64
    channels: int = 1
    # What a sample is made of; empty = one image input of image_size and channels.
    inputs: tuple[InputSpec, ...] = ()

    def input_specs(self) -> tuple[InputSpec, ...]:
        return self.inputs or (ImageInput("image", self.image_size, self.channels),)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": [t.to_dict() for t in self.tasks],
            "backbone": self.backbone,
            "backbone_args": dict(self.backbone_args),
            "shared_depth": self.shared_depth,
            "head_hidden": self.head_hidden,
            "dropout": self.dropout,
            "architecture": self.architecture,
            "architecture_args": dict(self.architecture_args),
            "image_size": self.image_size,
            "channels": self.channels,
            "inputs": [input_to_dict(i) for i in self.inputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        data = dict(data)
        data["tasks"] = tuple(TaskSpec.from_dict(t) for t in data["tasks"])
        data["inputs"] = tuple(input_from_dict(i) for i in data.get("inputs", ()))
        return cls(**data)


def _reader(name: str, spec: InputSpec, args: dict[str, Any]) -> Backbone:
    """The backbone ``name`` (``auto``: the input kind's own) sized for one input."""
    name = spec.backbone if name == "auto" else name
    cls = BACKBONES.get(name)
    if not cls.can_read(name, spec.kind, spec.backbone):
        raise ValueError(
            f"backbone '{name}' cannot read input '{spec.name}' ({spec.kind}); "
            f"use '{spec.backbone}' or 'auto'"
        )
    return cls.create(name, **spec.backbone_args(), **args)


def build_backbone(spec: ModelSpec) -> Backbone:
    inputs = spec.input_specs()
    if len(inputs) == 1 and spec.backbone != "fusion":
        return _reader(spec.backbone, inputs[0], dict(spec.backbone_args))
    if spec.backbone not in ("auto", "fusion"):
        names = [i.name for i in inputs]
        raise ValueError(f"inputs {names} need backbone 'fusion' or 'auto', not '{spec.backbone}'")
    width = spec.backbone_args.get("width", 32)
    encoders = {
        i.name: _reader("auto", i, {"width": width, "depth": i.fusion_depth}) for i in inputs
    }
    return Fusion(encoders, **spec.backbone_args)


def example_inputs(specs: tuple[InputSpec, ...], n: int = 2) -> Inputs:
    """A batch of ``n`` zero samples shaped as the model reads ``specs`` (architectures run
    it once to size their layers)."""
    tensors = {spec.name: torch.zeros(n, *spec.model_shape) for spec in specs}
    return next(iter(tensors.values())) if len(tensors) == 1 else tensors


def build_model(spec: ModelSpec, backbone: Backbone | None = None) -> MultiTaskModel:
    """The model of ``spec``; ``backbone`` is one already built from it (e.g. given its
    starting weights by ``mtl_models.nn.weights.load_initial_weights``)."""
    backbone = backbone or build_backbone(spec)
    return ARCHITECTURES.get(spec.architecture)(
        spec.tasks,
        backbone,
        shared_depth=spec.shared_depth,
        head_hidden=spec.head_hidden,
        dropout=spec.dropout,
        example=example_inputs(spec.input_specs()),
        **spec.architecture_args,
    )
