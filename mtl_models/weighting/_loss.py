"""Loss scalarisers (one backward pass per step), from ``torchjd.scalarization``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchjd.scalarization import DWA, FAMO, IMTLL, STCH, UW, Constant, GeometricMean, Random, Sum

from mtl_models.weighting._base import WEIGHTINGS, StepResult, WeightingMethod


class ScalarizerWeighting(WeightingMethod):
    """A weighting backed by a torchjd ``Scalarizer``; the effective weight of task ``t`` is
    d(combined loss)/d(loss_t), read off the same backward pass."""

    def __init__(self, task_names: Sequence[str], scalarizer: torch.nn.Module, **hyperparameters):
        super().__init__(task_names, **hyperparameters)
        self.scalarizer = scalarizer

    def backward(
        self,
        losses: Sequence[Tensor],
        features: Tensor | Sequence[Tensor] | None = None,
        shared_params: Sequence[Tensor] = (),
    ) -> StepResult:
        stacked = torch.stack(list(losses))
        stacked.retain_grad()
        combined = self.scalarize(stacked)
        combined.backward()
        assert stacked.grad is not None
        return StepResult(combined.detach(), stacked.grad.detach().clone(), None)

    def scalarize(self, losses: Tensor) -> Tensor:
        return self.scalarizer(losses)


@WEIGHTINGS.register("equal")
class EqualWeighting(ScalarizerWeighting):
    """The plain sum of task losses (every weight 1)."""

    fixed_weights = True

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names, Sum())


@WEIGHTINGS.register("static")
class StaticWeighting(ScalarizerWeighting):
    """Fixed, hand-set weights; tasks not named keep weight 1."""

    fixed_weights = True

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
        super().__init__(task_names, constant, weights=weights)


@WEIGHTINGS.register("uw")
class UncertaintyWeighting(ScalarizerWeighting):
    """Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018): a learned log-variance per
    task; its parameters are trained with the model."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names, UW(len(task_names)))


@WEIGHTINGS.register("imtl_l")
class ImpartialLossWeighting(ScalarizerWeighting):
    """IMTL-L (Liu et al., ICLR 2021): learned per-task loss scales, trained with the model."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names, IMTLL(len(task_names)))


@WEIGHTINGS.register("dwa")
class DynamicWeightAverage(ScalarizerWeighting):
    """DWA (Liu, Johns & Davison, CVPR 2019): weights from each loss's rate of descent over
    the last two epochs; ``temperature`` evens them out."""

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0):
        super().__init__(task_names, DWA(temperature), temperature=temperature)

    def end_epoch(self) -> None:
        self.scalarizer.step()


@WEIGHTINGS.register("famo")
class FastAdaptiveWeighting(ScalarizerWeighting):
    """FAMO (Liu et al., NeurIPS 2023): decreases every loss at a similar rate, learning its
    weights from how each loss changed across the optimiser step."""

    needs_losses_after_step = True

    def __init__(self, task_names: Sequence[str], lr: float = 0.025, weight_decay: float = 1e-3):
        super().__init__(
            task_names,
            FAMO(len(task_names), lr=lr, weight_decay=weight_decay),
            lr=lr,
            weight_decay=weight_decay,
        )

    def optimizer_parameters(self) -> list[torch.nn.Parameter]:
        return []  # FAMO learns its task logits with its own Adam, in after_step

    def after_step(self, losses_after: Tensor) -> None:
        self.scalarizer.update(losses_after)

    def prepare_resume(self) -> None:
        # torchjd creates FAMO's Adam at the first update; a checkpoint holds its moments
        famo = self.scalarizer
        if famo._optimizer is None:
            famo._optimizer = torch.optim.Adam(
                [famo._w], lr=famo.lr, weight_decay=famo.weight_decay
            )


@WEIGHTINGS.register("stch")
class SmoothTchebycheff(ScalarizerWeighting):
    """Smooth Tchebycheff scalarisation (Lin et al., ICML 2024): a smooth maximum of the task
    losses, so the worst task drives the update; smaller ``mu`` is closer to the maximum."""

    def __init__(self, task_names: Sequence[str], mu: float = 0.5):
        super().__init__(task_names, STCH(mu), mu=mu)


@WEIGHTINGS.register("rlw")
class RandomLossWeighting(ScalarizerWeighting):
    """Random loss weighting (Lin et al., TMLR 2022): fresh random weights every step, a
    strong baseline against tuned weightings."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names, Random())


@WEIGHTINGS.register("gls")
class GeometricLossStrategy(ScalarizerWeighting):
    """GLS (Chennupati et al., CVPR-W 2019): the geometric mean of the task losses."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names, GeometricMean())

    def scalarize(self, losses: Tensor) -> Tensor:
        # A task without labels in the batch has a loss of exactly 0, and log(0) would make
        # every gradient NaN: the geometric mean is taken over the tasks that have labels.
        present = losses.detach() > 0
        return self.scalarizer(losses[present]) if bool(present.any()) else losses.sum()
