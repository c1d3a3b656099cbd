"""Loss weighting: how the vector of per-task losses becomes what the optimiser minimises.

Methods come from torchjd; this module is the glue that gives them one interface, a registry
and typed hyperparameters (which the config layer reads to validate ``params.yaml``). The
trainer never tests a method's name: it calls ``combine`` and ``effective_weights`` and adds
``parameters()`` (learnable weightings) to its optimiser.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchjd.scalarization import Constant, Scalarizer, Sum

from mtl_models._registry import Registry


class Weighting(nn.Module, ABC):
    """Turns per-task losses ``[T]`` into one scalar loss."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__()
        self.task_names = list(task_names)

    @abstractmethod
    def combine(self, losses: Tensor) -> Tensor:
        """The scalar to back-propagate."""

    def effective_weights(self, losses: Tensor) -> Tensor:
        """d(combined)/d(loss_t) at ``losses``: the weight each task effectively gets."""
        probe = losses.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (weights,) = torch.autograd.grad(self.combine(probe), probe)
        return weights.detach()


class ScalarizerWeighting(Weighting):
    """A weighting backed by a torchjd ``Scalarizer`` (one backward pass per step)."""

    def __init__(self, task_names: Sequence[str], scalarizer: Scalarizer):
        super().__init__(task_names)
        self.scalarizer = scalarizer

    def combine(self, losses: Tensor) -> Tensor:
        return self.scalarizer(losses)


WEIGHTINGS: Registry[Weighting] = Registry("weighting method")


@WEIGHTINGS.register("equal")
class EqualWeighting(ScalarizerWeighting):
    """The plain sum of task losses (every weight 1)."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names, Sum())

    def extra_repr(self) -> str:
        return f"tasks={len(self.task_names)}"


@WEIGHTINGS.register("static")
class StaticWeighting(ScalarizerWeighting):
    """Fixed, hand-set weights; tasks not named keep weight 1."""

    def __init__(self, task_names: Sequence[str], weights: Mapping[str, float] | None = None):
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(task_names))
        if unknown:
            raise ValueError(f"static weights name unknown tasks {unknown}; tasks: {task_names}")
        negative = sorted(name for name, w in weights.items() if w < 0)
        if negative:
            raise ValueError(f"static weights must be >= 0, got negative for {negative}")
        vector = torch.tensor([float(weights.get(n, 1.0)) for n in task_names])
        constant = Constant(vector)
        # torchjd keeps the weights as a plain attribute; as a buffer they follow .to(device).
        del constant.weights
        constant.register_buffer("weights", vector)
        super().__init__(task_names, constant)
        self.weights = weights

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


def build_weighting(method: str, task_names: Sequence[str], **hyperparameters: object) -> Weighting:
    return WEIGHTINGS.get(method)(task_names, **hyperparameters)  # type: ignore[call-arg]
