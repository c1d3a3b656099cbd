"""MTAN (Liu et al., CVPR 2019, "End-to-End Multi-Task Learning with Attention")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_models.nn.architectures._base import (
    Features,
    Inputs,
    MultiTaskModel,
    handoff,
    needs_grad,
    register,
    task_key,
)
from mtl_models.nn.backbones import Backbone
from mtl_models.tasks import TaskSpec


class Pointwise(nn.Module):
    """A linear map of the channel dimension at every position (a 1x1 convolution for
    images and signals, a linear layer for feature vectors)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)


def resize(x: Tensor, size: torch.Size) -> Tensor:
    """``x`` averaged down (or spread up) to the positions ``size`` of another stage."""
    if x.shape[2:] == size:
        return x
    pools = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
    return pools[len(size)](x, size)


class TaskAttention(nn.Module):
    """One task's attention at one stage: a mask in (0, 1) per channel and position, from
    the stage's shared output and the task's attended output of the stage before."""

    def __init__(self, channels: int, previous: int | None):
        super().__init__()
        self.adapt = None if previous is None else Pointwise(previous, channels)
        given = channels if previous is None else 2 * channels
        self.mask = nn.Sequential(
            Pointwise(given, channels), nn.ReLU(), Pointwise(channels, channels), nn.Sigmoid()
        )

    def forward(self, shared: Tensor, previous: Tensor | None) -> Tensor:
        given = shared
        if self.adapt is not None and previous is not None:
            given = torch.cat([shared, self.adapt(resize(previous, shared.shape[2:]))], dim=1)
        return self.mask(given) * shared


@register("mtan")
class MTAN(MultiTaskModel):
    """A shared trunk (the blocks before the split point) and, per task, an attention
    module at the end of each of its stages that selects the task's features from the
    shared ones. Blocks after the split point become task branches, as with hard sharing.
    The attention works on any staged backbone's outputs: images, signals, vectors."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
        example: Inputs | None = None,
    ):
        super().__init__(tasks, backbone, shared_depth, head_hidden, dropout, example)
        # the trunk's stage ends (and the split point, when it falls inside a stage)
        self.attended = sorted(
            {e for e in self.stage_ends if e < self.shared_depth} | {self.shared_depth}
        )
        channels = self.probe(example, lambda x: [u.shape[1] for u in self._stages(x)])
        self.attention = nn.ModuleDict(
            {
                task_key(t.name): nn.ModuleList(
                    TaskAttention(c, channels[j - 1] if j else None) for j, c in enumerate(channels)
                )
                for t in tasks
            }
        )
        self.branches = self.task_branches(backbone)

    @classmethod
    def split_problem(cls, shared: int, total: int) -> str | None:
        if shared == 0:
            return (
                "attends over the shared trunk's stages, and model.shared_depth 0 shares "
                "none; share at least one stage"
            )
        return None

    def _stages(self, inputs: Inputs) -> list[Tensor]:
        """The trunk's output at each attended block count (handed over to the tasks)."""
        outputs, x = [], inputs
        for index, block in enumerate(self.trunk, start=1):
            x = block(x)
            if index in self.attended:
                if not isinstance(x, Tensor):
                    raise ValueError("MTAN attends over tensors; the fusion block is not one")
                outputs.append(handoff(x))
        return outputs  # type: ignore[return-value]

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def represent(self, inputs: Inputs) -> tuple[dict[str, Tensor], Features]:
        stages = self._stages(inputs)
        representations = {}
        for name in self.task_names:
            attended: Tensor | None = None
            for attention, shared in zip(self.attention[task_key(name)], stages, strict=True):
                attended = attention(shared, attended)
            assert attended is not None
            if self.branches is not None:
                attended = self.branches[task_key(name)](attended)
            representations[name] = self.pool(attended)
        return representations, needs_grad(*stages)

    def shared_modules(self) -> list[nn.Module]:
        return [self.trunk]

    def backbone_modules(self) -> list[nn.Module]:
        return [self.trunk] + ([] if self.branches is None else [self.branches])
