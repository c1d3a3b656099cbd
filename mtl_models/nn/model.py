"""The multi-task network: a shared trunk, optional per-task branches, one head per task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtl_models.inputs import ImageInput, InputSpec, input_from_dict, input_to_dict
from mtl_models.nn.backbones import BACKBONES, Backbone, Fusion
from mtl_models.nn.heads import Decoded, TaskHead, build_head
from mtl_models.tasks import TaskSpec


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


class MultiTaskModel(nn.Module):
    """One batch of inputs -> raw outputs per task. The batch is a tensor for one input
    (images ``[B, C, H, W]`` in [0, 1], signals ``[B, C, L]``, features ``[B, F]``) or a
    dict of them by input name for several (a fusion backbone).

    The backbone blocks before the split point (``shared_depth``: a stage count or the name
    of the block where the branches begin) are shared by all tasks; each task gets its own
    copy of the remaining blocks, then its head.
    """

    def __init__(
        self,
        tasks: tuple[TaskSpec, ...] | list[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not tasks:
            raise ValueError("a multi-task model needs at least one task")
        names = [t.name for t in tasks]
        if len({_key(n) for n in names}) != len(names):
            raise ValueError(
                f"task names must be unique (a name and its name_ collide), got {names}"
            )
        shared = backbone.split_index(shared_depth)
        depth = len(backbone.block_names())
        self.tasks = tuple(tasks)
        self.shared_depth = shared  # blocks in the trunk
        self.block_names = backbone.block_names()
        self.trunk = nn.Sequential(*backbone.blocks()[:shared])
        self.branches: nn.ModuleDict | None = None
        if shared < depth:
            self.branches = nn.ModuleDict(
                {_key(t.name): nn.Sequential(*backbone.blocks()[shared:]) for t in tasks}
            )
        self.pool = backbone.build_pool()
        self.heads = nn.ModuleDict(
            {
                _key(t.name): build_head(t, backbone.out_features, head_hidden, dropout)
                for t in tasks
            }
        )

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def forward(self, inputs: Tensor | dict[str, Tensor]) -> dict[str, Tensor]:
        return self.forward_with_features(inputs)[0]

    def forward_with_features(
        self, inputs: Tensor | dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Outputs per task and the last representation all tasks share (for methods that
        need per-task gradients of the shared parameters)."""
        shared = self.trunk(inputs)
        if self.branches is None:
            features = self.pool(shared)  # computed once, read by every head
            return {name: self.head(name)(features) for name in self.task_names}, features
        outputs = {
            name: self.head(name)(self.pool(self.branches[_key(name)](shared)))
            for name in self.task_names
        }
        return outputs, shared

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters every task's output depends on (the trunk before the split
        point; frozen BatchNorm layers excluded)."""
        return [p for p in self.trunk.parameters() if p.requires_grad]

    def backbone_modules(self) -> list[nn.Module]:
        """The backbone's part of the model (trunk and branches), heads excluded."""
        return [self.trunk] + ([] if self.branches is None else [self.branches])

    def head(self, name: str) -> TaskHead:
        head = self.heads[_key(name)]
        assert isinstance(head, TaskHead)
        return head

    def task_loss_terms(self, outputs: dict[str, Tensor], labels: Tensor) -> list[Tensor]:
        """One scalar loss per task: its mean over the samples labelled for it.

        ``labels`` is ``[B, T]`` float with NaN for a missing label. Missing labels are masked
        rather than indexed away, so the step needs no device-to-host sync; a task with no
        labelled sample in the batch contributes a zero that is still connected to the graph,
        so every parameter keeps receiving a (zero) gradient. The terms stay separate tensors
        (not views of one stacked tensor) so each can be back-propagated on its own.
        """
        terms = []
        for t, name in enumerate(self.task_names):
            target = labels[:, t]
            present = ~torch.isnan(target)
            filled = torch.where(present, target, torch.zeros_like(target))  # any valid label
            terms.append(self.head(name).loss(outputs[name], filled, present.to(target.dtype)))
        return terms

    def task_losses(self, outputs: dict[str, Tensor], labels: Tensor) -> Tensor:
        """Per-task losses stacked into ``[T]`` (see ``task_loss_terms``)."""
        return torch.stack(self.task_loss_terms(outputs, labels))

    @torch.no_grad()
    def decode(self, outputs: dict[str, Tensor]) -> dict[str, Decoded]:
        return {name: self.head(name).decode(out) for name, out in outputs.items()}


def _key(task: str) -> str:
    """The task's key in the model's module dicts: its name, unless that is an attribute
    of ``nn.Module`` (a task called ``type`` or ``eval``), which gets a trailing ``_``
    (task names ending in ``_`` are refused when they would collide)."""
    return f"{task}_" if hasattr(nn.ModuleDict, task) else task


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


def build_model(spec: ModelSpec, backbone: Backbone | None = None) -> MultiTaskModel:
    """The model of ``spec``; ``backbone`` is one already built from it (e.g. given its
    starting weights by ``mtl_models.nn.weights.load_initial_weights``)."""
    backbone = backbone or build_backbone(spec)
    return MultiTaskModel(
        spec.tasks,
        backbone,
        shared_depth=spec.shared_depth,
        head_hidden=spec.head_hidden,
        dropout=spec.dropout,
    )
