"""Loss functions that the heads use; masking of missing labels happens in the model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def corn_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CORN loss for ordinal targets (Shi, Cao & Raschka, 2023, "Deep neural networks for
    rank-consistent ordinal regression based on conditional probabilities", Pattern Anal. Appl.).

    ``logits[:, k]`` models P(y > k | y > k-1), trained only on samples with y >= k: each
    binary sub-task sees the conditional training subset, which makes the predicted cumulative
    probabilities rank-consistent by construction.

    Args:
        logits: ``[B, K-1]`` conditional logits.
        target: ``[B]`` integer levels in ``0..K-1``.
    """
    n_thresholds = logits.shape[1]
    levels = torch.arange(n_thresholds, device=logits.device)
    y = target.long().unsqueeze(1)
    in_subset = (y >= levels).float()  # sample takes part in sub-task k
    exceeds = (y > levels).float()  # its binary label there
    bce = F.binary_cross_entropy_with_logits(logits, exceeds, reduction="none")
    return (bce * in_subset).sum() / in_subset.sum().clamp(min=1.0)


def corn_probabilities(logits: Tensor) -> Tensor:
    """Class probabilities ``[B, K]`` from CORN conditional logits ``[B, K-1]``."""
    exceed = torch.cumprod(torch.sigmoid(logits), dim=1)  # P(y > k), non-increasing in k
    ones = torch.ones_like(exceed[:, :1])
    zeros = torch.zeros_like(exceed[:, :1])
    upper = torch.cat([ones, exceed], dim=1)
    lower = torch.cat([exceed, zeros], dim=1)
    return (upper - lower).clamp(min=0.0)


def corn_predict(logits: Tensor) -> Tensor:
    """Predicted level: the number of thresholds whose cumulative probability exceeds 0.5."""
    exceed = torch.cumprod(torch.sigmoid(logits), dim=1)
    return (exceed > 0.5).sum(dim=1)
