"""Gradient aggregators: combine per-task gradients of the shared parameters (torchjd).

The per-task Jacobian of the shared parameters comes from torchjd's ``mtl_backward`` (task-
specific parameters get ordinary gradients); ``jac_to_grad`` applies the aggregator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torchjd.aggregation import (
    IMTLG,
    MGDA,
    Aggregator,
    AlignedMTL,
    CAGrad,
    ConFIG,
    DualProj,
    FairGrad,
    GradVac,
    GramianWeightedAggregator,
    NashMTL,
    PCGrad,
    UPGrad,
)
from torchjd.autojac import jac_to_grad, mtl_backward

from mtl_models.weighting._base import WEIGHTINGS, StepResult, WeightingMethod
from mtl_models.weighting._features import backward_weighted, feature_jacobian

# One task per vmap chunk: on CPU 2x faster than all tasks at once and a quarter of the memory
# (DESIGN.md, measured with torchjd 0.18).
PARALLEL_CHUNK_SIZE = 1


Level = Literal["parameters", "features"]


def cosine_from_gramian(gramian: Tensor) -> Tensor:
    """``[T, T]`` cosine similarity of the task gradients whose Gramian is ``gramian``."""
    norms = gramian.diagonal().clamp(min=1e-24).sqrt()
    return gramian / torch.outer(norms, norms)


def gradient_cosine(shared_params: Sequence[Tensor]) -> Tensor:
    """``[T, T]`` cosine similarity of the task gradients held in the parameters' ``.jac``."""
    return cosine_from_gramian(_gramian(shared_params))


def _gramian(shared_params: Sequence[Tensor]) -> Tensor:
    return sum(p.jac.flatten(1) @ p.jac.flatten(1).T for p in shared_params)  # type: ignore[attr-defined]


class AggregatorWeighting(WeightingMethod):
    """A weighting backed by a torchjd ``Aggregator`` over the shared parameters' Jacobian.

    ``level``: ``parameters`` (exact) differentiates every task's loss through the shared
    blocks; ``features``, for aggregators that weigh the tasks from their Gramian, takes the
    tasks' gradients with respect to the shared features and backpropagates once
    (``mtl_models.weighting._features``). Either way the Gramian is formed once per step,
    for the weights and the logged gradient cosine alike."""

    needs_task_gradients = True

    def __init__(
        self,
        task_names: Sequence[str],
        aggregator: Aggregator,
        level: Level = "parameters",
        **hyperparameters,
    ):
        if level == "features" and not isinstance(aggregator, GramianWeightedAggregator):
            raise ValueError(
                f"level 'features' needs an aggregator that weighs the tasks from their "
                f"Gramian; {type(aggregator).__name__} does not (use level 'parameters')"
            )
        if level not in ("parameters", "features"):
            raise ValueError(f"level must be 'parameters' or 'features', got {level!r}")
        if level != "parameters":
            hyperparameters["level"] = level
        super().__init__(task_names, **hyperparameters)
        self.aggregator = aggregator
        self.level = level

    def _weights(self, gramian: Tensor) -> Tensor:
        """The aggregator's task weights from the ``[T, T]`` Gramian, computed on the CPU and
        returned on the Gramian's device. torchjd's weightings are small sequential programs
        (UPGrad's quadratic programs in numpy, MGDA's Frank-Wolfe loop branching on values,
        PCGrad's loop over task pairs), so on a GPU each of their steps waited for the device;
        one copy of T x T values replaces those waits."""
        weights = self.aggregator.gramian_weighting(gramian.detach().cpu())
        return weights.to(gramian.device)

    def backward(
        self,
        losses: Sequence[Tensor],
        features: Tensor | Sequence[Tensor] | None = None,
        shared_params: Sequence[Tensor] = (),
    ) -> StepResult:
        # the trainer passes both (check_weighting refuses a model that shares nothing)
        assert features is not None and shared_params
        values = torch.stack([loss.detach() for loss in losses])
        if self.level == "features":
            jacobian = feature_jacobian(losses, features)
            gramian = jacobian @ jacobian.T
            if self.process_mean is not None:
                # each process's losses are means over its shard of the batch: the whole
                # batch's Gramian is the processes' mean over their number
                gramian = self.process_mean(gramian) / self.process_mean.world_size  # type: ignore[attr-defined]
            weights = self._weights(gramian)
            backward_weighted(losses, features, jacobian, weights)
            return StepResult((weights * values).sum(), weights, cosine_from_gramian(gramian))
        mtl_backward(
            losses,
            features=features,
            shared_params=shared_params,
            parallel_chunk_size=PARALLEL_CHUNK_SIZE,
        )
        if self.process_mean is not None:  # the whole batch's task gradients, everywhere
            for p in shared_params:
                p.jac = self.process_mean(p.jac)  # type: ignore[attr-defined]
        if isinstance(self.aggregator, GramianWeightedAggregator):  # one Gramian per step
            gramian = _gramian(shared_params)
            weights = self._weights(gramian)
            for p in shared_params:
                step = (weights.to(p.jac.dtype) @ p.jac.flatten(1)).view_as(p)  # type: ignore[attr-defined]
                p.grad = step if p.grad is None else p.grad + step
                del p.jac  # type: ignore[attr-defined]
            return StepResult((weights * values).sum(), weights, cosine_from_gramian(gramian))
        cosine = gradient_cosine(shared_params)
        weights = jac_to_grad(shared_params, self.aggregator)
        if weights is None:  # an aggregator that does not weight the task gradients
            return StepResult(values.sum(), None, cosine)
        weights = weights.detach()
        return StepResult((weights * values).sum(), weights, cosine)


@WEIGHTINGS.register("upgrad")
class UPGradWeighting(AggregatorWeighting):
    """UPGrad (Quinton & Rey, 2024, "Jacobian descent for multi-objective optimization"):
    projects every task gradient onto the dual cone, so no task's loss is increased."""

    def __init__(self, task_names: Sequence[str], level: Level = "parameters"):
        super().__init__(task_names, UPGrad(), level)


@WEIGHTINGS.register("pcgrad")
class PCGradWeighting(AggregatorWeighting):
    """PCGrad (Yu et al., NeurIPS 2020): removes the conflicting component between task
    gradients before summing them."""

    def __init__(self, task_names: Sequence[str], level: Level = "parameters"):
        super().__init__(task_names, PCGrad(), level)


@WEIGHTINGS.register("cagrad")
class CAGradWeighting(AggregatorWeighting):
    """CAGrad (Liu et al., NeurIPS 2021): the update closest to the average gradient that
    improves the worst task; ``c`` sets how far from the average it may go."""

    def __init__(self, task_names: Sequence[str], c: float = 0.4, level: Level = "parameters"):
        super().__init__(task_names, CAGrad(c=c), level, c=c)


@WEIGHTINGS.register("mgda")
class MGDAWeighting(AggregatorWeighting):
    """MGDA (Désidéri, 2012; Sener & Koltun, NeurIPS 2018): the minimum-norm convex
    combination of task gradients."""

    def __init__(
        self,
        task_names: Sequence[str],
        epsilon: float = 1e-3,
        max_iters: int = 100,
        level: Level = "parameters",
    ):
        super().__init__(
            task_names,
            MGDA(epsilon=epsilon, max_iters=max_iters),
            level,
            epsilon=epsilon,
            max_iters=max_iters,
        )


@WEIGHTINGS.register("nash_mtl")
class NashMTLWeighting(AggregatorWeighting):
    """Nash-MTL (Navon et al., ICML 2022): task weights from a bargaining game; solving it
    every ``update_weights_every`` steps trades accuracy for speed."""

    def __init__(
        self,
        task_names: Sequence[str],
        update_weights_every: int = 1,
        optim_niter: int = 20,
        max_norm: float = 1.0,
    ):
        super().__init__(
            task_names,
            NashMTL(
                n_tasks=len(task_names),
                max_norm=max_norm,
                update_weights_every=update_weights_every,
                optim_niter=optim_niter,
            ),
            update_weights_every=update_weights_every,
            optim_niter=optim_niter,
            max_norm=max_norm,
        )


@WEIGHTINGS.register("aligned_mtl")
class AlignedMTLWeighting(AggregatorWeighting):
    """Aligned-MTL (Senushkin et al., CVPR 2023): aligns the task gradients' principal
    components to remove conflict and imbalance."""

    def __init__(
        self,
        task_names: Sequence[str],
        scale_mode: Literal["min", "median", "rmse"] = "min",
        level: Level = "parameters",
    ):
        super().__init__(
            task_names, AlignedMTL(scale_mode=scale_mode), level, scale_mode=scale_mode
        )


@WEIGHTINGS.register("gradvac")
class GradVacWeighting(AggregatorWeighting):
    """GradVac (Wang et al., ICLR 2021): aligns task gradients towards their running cosine
    similarity; ``beta`` is its moving-average rate."""

    def __init__(self, task_names: Sequence[str], beta: float = 0.5, level: Level = "parameters"):
        super().__init__(task_names, GradVac(beta=beta), level, beta=beta)


@WEIGHTINGS.register("imtl_g")
class IMTLGWeighting(AggregatorWeighting):
    """IMTL-G (Liu et al., ICLR 2021): the update whose projection on every task gradient's
    direction is equal."""

    def __init__(self, task_names: Sequence[str], level: Level = "parameters"):
        super().__init__(task_names, IMTLG(), level)


@WEIGHTINGS.register("dualproj")
class DualProjWeighting(AggregatorWeighting):
    """DualProj (Quinton & Rey, 2024): the mean gradient projected onto the dual cone."""

    def __init__(self, task_names: Sequence[str], level: Level = "parameters"):
        super().__init__(task_names, DualProj(), level)


@WEIGHTINGS.register("fairgrad")
class FairGradWeighting(AggregatorWeighting):
    """FairGrad (Ban & Ji, ICML 2024): alpha-fair utility over tasks (alpha=1: proportional
    fairness; larger: closer to max-min fairness)."""

    def __init__(self, task_names: Sequence[str], alpha: float = 1.0, level: Level = "parameters"):
        super().__init__(task_names, FairGrad(alpha=alpha), level, alpha=alpha)


@WEIGHTINGS.register("config")
class ConFIGWeighting(AggregatorWeighting):
    """ConFIG (Liu et al., ICLR 2025): a conflict-free update with an equal positive projection
    on every task gradient."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names, ConFIG())
