"""The weighting interface: how per-task losses become parameter gradients.

A method declares what it needs through class attributes and hooks, and the trainer serves
exactly that, never testing a method's name:

- ``needs_task_gradients``: the per-task gradients of the shared parameters (gradient
  aggregators); the trainer passes the shared features and parameters to ``backward``.
- ``needs_losses_after_step``: the losses recomputed on the same batch after the optimiser
  step (FAMO); the trainer calls ``after_step`` with them.
- learnable parameters (UW, IMTL-L): ``optimizer_parameters()``, which the trainer adds to
  its optimiser (a method that updates its own state, like FAMO, returns none).
- epoch-level state (DWA): ``end_epoch``, called once per epoch.
- ``fixed_weights``: the update is a fixed linear combination of the task losses.

Under DDP every method runs: the trainer gives each process the task losses' mean values
over the processes (so loss-dependent weights agree), and a method that takes per-task
gradients gets ``process_mean`` to average what its weights come from (the Jacobian rows,
or the features' Gramian) before it weighs them; the trainer then averages the gradients.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

from torch import Tensor, nn

from mtl_models._registry import Registry


class StepResult(NamedTuple):
    loss: Tensor  # detached scalar: the weighted loss of this step (for logging)
    weights: Tensor | None  # detached [T]: each task's effective weight, where defined
    gradient_cosine: Tensor | None  # detached [T, T]: cosine of task gradients, where computed


class WeightingMethod(nn.Module, ABC):
    """Turns per-task losses ``[T]`` into gradients on every parameter."""

    needs_task_gradients: ClassVar[bool] = False
    needs_losses_after_step: ClassVar[bool] = False
    fixed_weights: ClassVar[bool] = False

    def __init__(self, task_names: Sequence[str], **hyperparameters: Any):
        super().__init__()
        self.task_names = list(task_names)
        self.hyperparameters = hyperparameters
        # under DDP: a tensor's mean over the processes (``Acceleration``'s ``ProcessMean``)
        self.process_mean: Callable[[Tensor], Tensor] | None = None

    @abstractmethod
    def backward(
        self,
        losses: Sequence[Tensor],
        features: Tensor | Sequence[Tensor] | None = None,
        shared_params: Sequence[Tensor] = (),
    ) -> StepResult:
        """Accumulate gradients into ``.grad`` of the model (and of this module's parameters).

        ``losses`` holds one scalar per task, as separate tensors (see
        ``MultiTaskModel.task_loss_terms``); ``features`` and ``shared_params`` are given to
        methods with ``needs_task_gradients``.
        """

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """Parameters the trainer's optimiser should learn with the model."""
        return list(self.parameters())

    def after_step(self, losses_after: Tensor) -> None:
        """Losses of the same batch after the optimiser step (``needs_losses_after_step``)."""

    def end_epoch(self) -> None:
        """Roll epoch-level state forward."""

    def prepare_resume(self) -> None:
        """Create state a method builds lazily (an optimiser at the first step), so a
        checkpoint's state can be loaded into it (``mtl_models.train.resume``)."""

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())


WEIGHTINGS: Registry[WeightingMethod] = Registry("weighting method")


def check_weighting(
    method: type[WeightingMethod],
    who: str,
    *,
    shares_blocks: bool = True,
    joint_batches: bool = True,
) -> None:
    """What a method needs from the model and the batches, in one place: the trainer and the
    configuration both ask here. ``who`` names the method in the message (a class name, or
    the params key with its value). Raises ``ValueError``."""
    if method.needs_task_gradients and not shares_blocks:
        raise ValueError(
            f"{who} combines per-task gradients of the shared blocks, but the model shares "
            "none (shared_depth=0); share at least one block (model.shared_depth >= 1)"
        )
    if method.needs_task_gradients and not joint_batches:
        raise ValueError(
            f"{who} combines the tasks' gradients within a batch, but the alternating schedule "
            "trains one task per batch; use schedule 'joint' or a loss-based method"
        )


def build_weighting(
    method: str, task_names: Sequence[str], **hyperparameters: object
) -> WeightingMethod:
    return WEIGHTINGS.get(method)(task_names, **hyperparameters)  # type: ignore[call-arg]
