"""DSelect-k (Hazimeh et al., NeurIPS 2021, "DSelect-k: Differentiable Selection in the
Mixture of Experts with Applications to Multi-Task Learning")."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtl_models.nn.architectures._base import Inputs, register
from mtl_models.nn.architectures.mmoe import Mixture
from mtl_models.nn.backbones import Backbone
from mtl_models.tasks import TaskSpec


def smooth_step(t: Tensor, gamma: float) -> Tensor:
    """0 below ``-gamma/2``, 1 above ``gamma/2``, a cubic in between (continuously
    differentiable): exact zeros and ones, unlike a sigmoid, so a selector can settle."""
    cubic = -2 / gamma**3 * t**3 + 3 / (2 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, 0.0, torch.where(t >= gamma / 2, 1.0, cubic))


class DSelectGate(nn.Module):
    """``k`` selectors, each picking one of ``experts`` through ``ceil(log2(experts))``
    smooth binary decisions; a softmax over the selectors mixes what they picked. Per-sample
    (the paper's per-example gate): the decisions are linear in the gate's input."""

    def __init__(self, width: int, experts: int, k: int, gamma: float):
        super().__init__()
        self.k, self.gamma = k, gamma
        bits = max(1, math.ceil(math.log2(experts)))
        codes = [[(c >> b) & 1 for b in range(bits)] for c in range(2**bits)]
        self.codes: Tensor
        self.register_buffer("codes", torch.tensor(codes, dtype=torch.float32), persistent=False)
        # with fewer experts than codes, code c picks expert c mod experts: every code is
        # some expert, so the selection always sums to 1 (an unused code cannot trap it)
        owner = torch.arange(2**bits) % experts
        self.owners: Tensor
        self.register_buffer(
            "owners", nn.functional.one_hot(owner, experts).float(), persistent=False
        )
        self.decisions = nn.Linear(width, k * bits)
        self.selector_logits = nn.Linear(width, k)
        # start every decision inside the smooth region, so each selector can still move
        nn.init.uniform_(self.decisions.weight, -gamma / 100, gamma / 100)
        nn.init.uniform_(self.decisions.bias, -gamma / 2, gamma / 2)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        s = smooth_step(self.decisions(x), self.gamma).view(batch, self.k, 1, -1)  # [B,k,1,m]
        codes = self.codes.to(s.dtype)
        # probability of each binary code under each selector, then per expert: [B, k, E]
        chosen = (s * codes + (1 - s) * (1 - codes)).prod(-1) @ self.owners.to(s.dtype)
        mixing = torch.softmax(self.selector_logits(x), dim=-1).unsqueeze(-1)  # [B, k, 1]
        return (mixing * chosen).sum(1)


@register("dselect_k")
class DSelectK(Mixture):
    """A mixture of ``experts`` shared experts (as MMoE) whose per-task gate selects at most
    ``k`` of them, differentiably (``gamma``: width of the smooth step). A sparse gate makes
    which tasks share which experts explicit; the paper's entropy regulariser is not applied
    (the smooth step already drives selections to exact 0/1)."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
        example: Inputs | None = None,
        experts: int = 4,
        k: int = 2,
        gamma: float = 1.0,
    ):
        if not 1 <= k <= experts:
            raise ValueError(f"k must be in 1..experts ({experts}), got {k}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")

        def gate(width: int, n: int) -> nn.Module:
            return DSelectGate(width, n, k, gamma)

        super().__init__(
            tasks, backbone, shared_depth, head_hidden, dropout, example, experts, gate
        )
        self.k_selected, self.gamma = k, gamma

    def hyperparameters(self) -> dict[str, Any]:
        return {"experts": self.n_experts, "k": self.k_selected, "gamma": self.gamma}
