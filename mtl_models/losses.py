"""Loss functions that the heads use.

Every loss takes an optional ``mask`` ``[B]`` (1 = labelled): the mean runs over the labelled
samples only, computed without indexing, so a training step never waits on the device to
learn how many labels a batch holds. A batch without labels gives a zero that is still
connected to the graph.

Class imbalance: every discrete loss takes optional per-class weights (a sample counts by its
true class's weight) and a focal ``gamma`` (Lin et al., ICCV 2017: a sample's term is scaled by
``(1 - p_true) ** gamma``, so well-classified samples of the common classes fade out).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import Tensor

ClassWeighting = Literal["none", "balanced", "effective_number"]
# Cui et al., CVPR 2019, "Class-Balanced Loss Based on Effective Number of Samples": beta close
# to 1 approaches "balanced"; 0.999 suits classes of tens to thousands of samples.
EFFECTIVE_NUMBER_BETA = 0.999


def class_weights(
    labels: np.ndarray, n_classes: int, method: ClassWeighting, beta: float = EFFECTIVE_NUMBER_BETA
) -> tuple[float, ...] | None:
    """Per-class loss weights from a task's training labels (NaN = missing).

    ``balanced`` is scikit-learn's ``n_samples / (n_present_classes * count)``; ``effective_number``
    is ``(1 - beta) / (1 - beta ** count)``, scaled to sum to the number of classes present.
    A class absent from the labels gets weight 0 (no sample carries it). ``none`` gives ``None``.
    """
    if method not in ("none", "balanced", "effective_number"):
        raise ValueError(
            f"unknown class weighting '{method}'; use none, balanced or effective_number"
        )
    if method == "none":
        return None
    values = np.asarray(labels, dtype=float)
    y = values[~np.isnan(values)].astype(int)
    counts = np.bincount(y, minlength=n_classes)
    present = np.flatnonzero(counts)
    weights = np.zeros(n_classes)
    if len(present) == 0:
        return tuple(float(w) for w in np.ones(n_classes))
    if method == "balanced":
        weights[present] = compute_class_weight("balanced", classes=present, y=y)
    elif method == "effective_number":
        raw = (1.0 - beta) / (1.0 - beta ** counts[present])
        weights[present] = raw * len(present) / raw.sum()
    else:
        raise ValueError(
            f"unknown class weighting '{method}'; use none, balanced or effective_number"
        )
    return tuple(float(w) for w in weights)


def _reduce(terms: Tensor, sample_weight: Tensor | None, mask: Tensor | None = None) -> Tensor:
    """Mean of per-sample ``terms``, weighted like ``F.cross_entropy(weight=...)`` does,
    over the samples ``mask`` keeps."""
    if mask is not None:
        sample_weight = mask if sample_weight is None else sample_weight * mask
    if sample_weight is None:
        return terms.mean()
    return (terms * sample_weight).sum() / sample_weight.sum().clamp(min=1e-12)


def _focal(nll: Tensor, gamma: float) -> Tensor:
    """Scale negative log-likelihood terms by ``(1 - p) ** gamma`` where ``p = exp(-nll)``."""
    if gamma == 0:
        return nll
    # 1 - p as -expm1(-nll), accurate near p = 1; the floor keeps the gradient of x ** gamma
    # finite (gamma < 1 has an infinite slope at 0) for samples predicted with certainty
    return nll * (-torch.expm1(-nll)).clamp(min=1e-12) ** gamma


def softmax_loss(
    logits: Tensor,
    target: Tensor,
    weights: Tensor | None = None,
    gamma: float = 0.0,
    mask: Tensor | None = None,
) -> Tensor:
    """Cross-entropy over ``[B, K]`` logits, with optional class weights and focal ``gamma``."""
    y = target.long()
    nll = F.cross_entropy(logits, y, reduction="none")
    return _reduce(_focal(nll, gamma), None if weights is None else weights[y], mask)


def sigmoid_loss(
    logit: Tensor,
    target: Tensor,
    weights: Tensor | None = None,
    gamma: float = 0.0,
    mask: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy over ``[B]`` logits, with optional class weights and focal ``gamma``."""
    nll = F.binary_cross_entropy_with_logits(logit, target.float(), reduction="none")
    return _reduce(_focal(nll, gamma), None if weights is None else weights[target.long()], mask)


def mse_loss(prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over the samples ``mask`` keeps."""
    return _reduce((prediction - target) ** 2, None, mask)


def corn_loss(
    logits: Tensor,
    target: Tensor,
    weights: Tensor | None = None,
    gamma: float = 0.0,
    mask: Tensor | None = None,
) -> Tensor:
    """CORN loss for ordinal targets (Shi, Cao & Raschka, 2023, "Deep neural networks for
    rank-consistent ordinal regression based on conditional probabilities", Pattern Anal. Appl.).

    ``logits[:, k]`` models P(y > k | y > k-1), trained only on samples with y >= k: each
    binary sub-task sees the conditional training subset, which makes the predicted cumulative
    probabilities rank-consistent by construction.

    Args:
        logits: ``[B, K-1]`` conditional logits.
        target: ``[B]`` integer levels in ``0..K-1``.
        weights: optional ``[K]`` per-level weights; a sample's terms count by its level's.
        gamma: focal exponent applied to each binary sub-task term.
        mask: optional ``[B]``, 1 for the samples to learn from.
    """
    n_thresholds = logits.shape[1]
    levels = torch.arange(n_thresholds, device=logits.device)
    y = target.long().unsqueeze(1)
    in_subset = (y >= levels).float()  # sample takes part in sub-task k
    exceeds = (y > levels).float()  # its binary label there
    bce = _focal(F.binary_cross_entropy_with_logits(logits, exceeds, reduction="none"), gamma)
    if weights is not None:
        in_subset = in_subset * weights[y]
    if mask is not None:
        in_subset = in_subset * mask.unsqueeze(1)
    return (bce * in_subset).sum() / in_subset.sum().clamp(min=1e-12)


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
