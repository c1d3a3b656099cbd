"""MMoE (Ma et al., KDD 2018, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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


class Mixture(GatedModel):
    """Experts shared by all tasks (copies of the backbone's blocks after the split point)
    and a gate per task, built by ``gate(width, experts)``, that weighs them per sample."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None,
        head_hidden: int,
        dropout: float,
        example: Inputs | None,
        experts: int,
        gate: Callable[[int, int], nn.Module],
    ):
        super().__init__(tasks, backbone, shared_depth, head_hidden, dropout, example)
        self.n_experts = positive("experts", experts)
        total = len(self.block_names)
        self.experts = self.experts_of(backbone, experts, self.shared_depth, total)
        width = self.probe(example, lambda x: summarize(self.trunk(x)).shape[1])
        self.gates = self.per_task(lambda: gate(width, experts))

    def expert_names(self) -> list[str]:
        return [f"expert {e + 1}" for e in range(self.n_experts)]

    def represent(self, inputs: Inputs) -> tuple[dict[str, Tensor], Features]:
        shared = self.trunk(inputs)
        outputs = stack([self.pool(expert(shared)) for expert in self.experts])
        gate_input = summarize(handoff(shared))  # the gates' own node: the features stay a cut
        representations = {}
        for name in self.task_names:
            weights = self.gates[task_key(name)](gate_input)
            self.record(name, weights)
            representations[name] = mix(weights, outputs)
        return representations, needs_grad(outputs, gate_input)

    def shared_modules(self) -> list[nn.Module]:
        return [self.trunk, self.experts]

    def backbone_modules(self) -> list[nn.Module]:
        return [self.trunk, self.experts]


@register("mmoe")
class MMoE(Mixture):
    """``experts`` copies of the backbone's blocks after the split point, shared by all
    tasks; each task's softmax gate reads the stem's output (the raw input when nothing is
    shared before the split) and weighs the experts for each sample. Tasks that use the same
    experts share; tasks that conflict can move apart."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
        example: Inputs | None = None,
        experts: int = 4,
    ):
        super().__init__(
            tasks, backbone, shared_depth, head_hidden, dropout, example, experts, softmax_gate
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {"experts": self.n_experts}
