"""Cross-stitch networks (Misra et al., CVPR 2016, "Cross-stitch Networks for Multi-task
Learning")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtl_models.nn.architectures._base import (
    Features,
    Inputs,
    MultiTaskModel,
    needs_grad,
    register,
    task_key,
)
from mtl_models.nn.backbones import Backbone
from mtl_models.tasks import TaskSpec


class CrossStitch(nn.Module):
    """``[T, T]`` learnt mixing of the task columns' outputs: column ``t`` continues with
    ``sum_s alpha[t, s] * x_s``. One unit per stage (the paper's per-layer variant; it also
    tries one per channel)."""

    def __init__(self, tasks: int, keep: float):
        super().__init__()
        off = (1 - keep) / (tasks - 1) if tasks > 1 else 0.0
        start = torch.full((tasks, tasks), off) + torch.eye(tasks) * (keep - off)
        self.alpha = nn.Parameter(start)

    def forward(self, columns: Tensor, task: int) -> Tensor:
        """Column ``task``'s next input from all columns' outputs ``[B, T, ...]``. One task
        at a time, so each task's backward pass has a graph of its own."""
        return torch.einsum("s,bs...->b...", self.alpha[task].to(columns.dtype), columns)


@register("cross_stitch")
class CrossStitchNetwork(MultiTaskModel):
    """One column per task (copies of the backbone's blocks after the split point), joined
    after each stage by a cross-stitch unit that learns how much each column reads from the
    others; ``keep`` is the starting weight on a column's own output (the paper's 0.9)."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
        example: Inputs | None = None,
        keep: float = 0.9,
    ):
        super().__init__(tasks, backbone, shared_depth, head_hidden, dropout, example)
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        self.keep = keep
        stages = self.stage_groups(self.shared_depth, len(self.block_names))
        self.columns = nn.ModuleDict(
            {
                task_key(t.name): nn.ModuleList(self.copy_blocks(backbone, a, b) for a, b in stages)
                for t in tasks
            }
        )
        self.stitches = nn.ModuleList(CrossStitch(len(tasks), keep) for _ in stages)

    @classmethod
    def split_problem(cls, shared: int, total: int) -> str | None:
        if shared >= total:
            return (
                "its task columns are copies of the backbone blocks after the split point, "
                f"and model.shared_depth shares all {total}; split earlier (a lower "
                "model.shared_depth)"
            )
        return None

    def hyperparameters(self) -> dict[str, Any]:
        return {"keep": self.keep}

    def represent(self, inputs: Inputs) -> tuple[dict[str, Tensor], Features]:
        shared = self.trunk(inputs)
        columns = [self.columns[task_key(name)] for name in self.task_names]
        xs: list[Inputs] = [shared] * len(columns)
        outputs = torch.empty(0)
        for stage, stitch in enumerate(self.stitches):
            outputs = torch.stack(
                [column[stage](x) for column, x in zip(columns, xs, strict=True)], 1
            )
            xs = [stitch(outputs, t) for t in range(len(columns))]
        # the cut: the columns' last outputs, read by the last stitch (each of whose rows
        # belongs to one task)
        representations = {name: self.pool(x) for name, x in zip(self.task_names, xs, strict=True)}
        return representations, needs_grad(outputs)  # type: ignore[arg-type]

    def shared_modules(self) -> list[nn.Module]:
        return [self.trunk, self.columns, *self.stitches[:-1]]

    def backbone_modules(self) -> list[nn.Module]:
        return [self.trunk, self.columns]
