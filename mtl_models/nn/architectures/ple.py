"""CGC and PLE (Tang et al., RecSys 2020, "Progressive Layered Extraction (PLE): A Novel
Multi-Task Learning (MTL) Model for Personalized Recommendations")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtl_models.nn.architectures._base import (
    Features,
    Inputs,
    handoff,
    mix,
    needs_grad,
    register,
    summarize,
    task_key,
)
from mtl_models.nn.architectures._experts import GatedModel, positive, softmax_gate, stack
from mtl_models.nn.backbones import Backbone
from mtl_models.tasks import TaskSpec


class Extraction(GatedModel):
    """Levels of experts over the backbone's blocks after the split point: at each level,
    ``shared_experts`` serve every task and ``task_experts`` serve one task each. A task's
    gate mixes the shared experts and its own; between levels a shared gate mixes all of
    them into the next level's shared input, so what tasks share is learnt level by level.
    The subclass says how the blocks are cut into levels."""

    per_stage: ClassVar[bool]  # a level per backbone stage (PLE), or one level (CGC)

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
        example: Inputs | None = None,
        shared_experts: int = 2,
        task_experts: int = 1,
    ):
        super().__init__(tasks, backbone, shared_depth, head_hidden, dropout, example)
        self.n_shared = positive("shared_experts", shared_experts)
        self.n_task = positive("task_experts", task_experts)
        levels = self.levels(self.shared_depth, len(self.block_names))
        self.shared_experts = nn.ModuleList(
            self.experts_of(backbone, shared_experts, a, b) for a, b in levels
        )
        self.task_experts = nn.ModuleList(
            self.per_task(lambda a=a, b=b: self.experts_of(backbone, task_experts, a, b))
            for a, b in levels
        )
        widths = self.probe(example, self._gate_widths)
        n_tasks = len(self.tasks)
        self.task_gates = nn.ModuleList(
            self.per_task(lambda w=w: softmax_gate(w, shared_experts + task_experts))
            for w in widths
        )
        self.shared_gates = nn.ModuleList(
            softmax_gate(w, shared_experts + n_tasks * task_experts) for w in widths[:-1]
        )

    def levels(self, shared: int, total: int) -> list[tuple[int, int]]:
        """The backbone blocks of each level: ``[(start, stop), ...]``."""
        return self.stage_groups(shared, total) if self.per_stage else [(shared, total)]

    def _gate_widths(self, x: Inputs) -> list[int]:
        widths = []
        x = self.trunk(x)
        for experts in self.shared_experts:
            widths.append(summarize(x).shape[1])
            x = experts[0](x)
        return widths

    def hyperparameters(self) -> dict[str, Any]:
        return {"shared_experts": self.n_shared, "task_experts": self.n_task}

    def expert_names(self) -> list[str]:
        shared = [f"shared {e + 1}" for e in range(self.n_shared)]
        own = [f"{name} {e + 1}" for name in self.task_names for e in range(self.n_task)]
        return shared + own

    def gate_weights(self) -> dict[str, Tensor] | None:
        """The last level's gates over all experts (zero for other tasks' own experts)."""
        seen = super().gate_weights()
        if seen is None:
            return None
        full = {}
        for t, name in enumerate(self.task_names):
            weights = seen[name].new_zeros(self.n_shared + len(self.tasks) * self.n_task)
            weights[: self.n_shared] = seen[name][: self.n_shared]
            start = self.n_shared + t * self.n_task
            weights[start : start + self.n_task] = seen[name][self.n_shared :]
            full[name] = weights
        return full

    def represent(self, inputs: Inputs) -> tuple[dict[str, Tensor], Features]:
        shared_in = self.trunk(inputs)
        task_in = {name: handoff(shared_in) for name in self.task_names}
        last = len(self.shared_experts) - 1
        features: Features = ()
        for level, experts in enumerate(self.shared_experts):
            post = self.pool if level == last else nn.Identity()
            shared_out = stack([post(e(shared_in)) for e in experts])
            own = {
                name: stack(
                    [post(e(task_in[name])) for e in self.task_experts[level][task_key(name)]]
                )
                for name in self.task_names
            }
            if level == last:  # the cut: what the last level's task layers read
                features = needs_grad(shared_out, *task_in.values())
            mixed = {}
            for name in self.task_names:
                weights = self.task_gates[level][task_key(name)](summarize(task_in[name]))
                if level == last:
                    self.record(name, weights)
                mixed[name] = mix(weights, _cat(shared_out, own[name]))
            if level < last:
                weights = self.shared_gates[level](summarize(shared_in))
                shared_in = mix(weights, _cat(shared_out, *own.values()))
            task_in = mixed
        return task_in, features

    def shared_modules(self) -> list[nn.Module]:
        # everything before the last level reaches every task through the shared gates
        return [
            self.trunk,
            self.shared_experts,
            self.shared_gates,
            *self.task_experts[:-1],
            *self.task_gates[:-1],
        ]

    def backbone_modules(self) -> list[nn.Module]:
        return [self.trunk, self.shared_experts, self.task_experts]


def _cat(*stacks: Tensor) -> Tensor:
    """Stacks of expert outputs ``[B, E_i, ...]`` -> one ``[B, sum E_i, ...]``."""
    return torch.cat(stacks, dim=1)


@register("cgc")
class CGC(Extraction):
    """Customized Gate Control: one level of shared and task-specific experts over all the
    blocks after the split point (PLE with a single level)."""

    per_stage = False


@register("ple")
class PLE(Extraction):
    """Progressive Layered Extraction: one CGC level per backbone stage after the split
    point (a split one stage from the end is CGC)."""

    per_stage = True
