"""Fine-tuning a (pretrained) backbone: the heads train alone for the first epochs, the
backbone at a fraction of the learning rate after that, its BatchNorm layers optionally
frozen. Freezing sets the backbone's learning rate to zero rather than turning its
gradients off, so every weighting method (which may need the shared parameters' per-task
gradients) and DDP work unchanged; the frozen BatchNorm statistics stay as loaded."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtl_models.nn.model import MultiTaskModel

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


@dataclass(frozen=True)
class FineTune:
    freeze_epochs: int = 0  # epochs (from the first) in which the backbone does not change
    backbone_lr_scale: float = 1.0  # the backbone's learning rate relative to the heads'
    freeze_batchnorm: bool = False  # BatchNorm statistics and affine weights stay as loaded

    def __post_init__(self) -> None:
        if self.freeze_epochs < 0:
            raise ValueError(f"freeze_epochs must be >= 0, got {self.freeze_epochs}")
        if not 0 < self.backbone_lr_scale <= 1:
            raise ValueError(f"backbone_lr_scale must be in (0, 1], got {self.backbone_lr_scale}")

    def prepare(self, model: MultiTaskModel) -> None:
        """Before the optimiser is built: frozen BatchNorm weights take no gradient."""
        if self.freeze_batchnorm:
            for norm in _norms(model):
                norm.requires_grad_(False)

    def param_groups(
        self, model: MultiTaskModel, extra: Sequence[nn.Parameter] = ()
    ) -> list[dict[str, list[nn.Parameter]]]:
        """Two optimiser groups: the backbone's trainable parameters, then everything else
        (heads and ``extra``, e.g. a weighting method's own parameters)."""
        backbone = {id(p) for m in model.backbone_modules() for p in m.parameters()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        return [
            {"params": [p for p in trainable if id(p) in backbone]},
            {"params": [p for p in trainable if id(p) not in backbone] + list(extra)},
        ]

    def schedule(self, epochs: int) -> list[Callable[[int], float]]:
        """Learning-rate factors per epoch for the two groups: a cosine to zero over
        ``epochs`` (as ``CosineAnnealingLR``), the backbone's scaled and zero while frozen."""

        def cosine(epoch: int) -> float:
            return 0.5 * (1 + math.cos(math.pi * epoch / epochs))

        def backbone(epoch: int) -> float:
            return 0.0 if epoch < self.freeze_epochs else self.backbone_lr_scale * cosine(epoch)

        return [backbone, cosine]

    def set_mode(self, model: MultiTaskModel, epoch: int) -> None:
        """After ``model.train()`` in 0-based ``epoch``: BatchNorm layers that must not
        learn statistics (frozen, or the backbone still frozen) go back to eval mode."""
        if self.freeze_batchnorm or epoch < self.freeze_epochs:
            for norm in _norms(model):
                norm.eval()


def _norms(model: MultiTaskModel) -> list[nn.Module]:
    return [m for part in model.backbone_modules() for m in part.modules() if isinstance(m, _NORMS)]


def scheduler(
    optimizer: torch.optim.Optimizer, fine_tune: FineTune, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fine_tune.schedule(epochs))
