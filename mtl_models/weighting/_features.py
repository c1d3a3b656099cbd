"""Feature-level aggregation: weigh the tasks from their gradients with respect to the shared
representation, then backpropagate the weighted loss once through the shared blocks.

The exact path differentiates every task's loss through the whole shared trunk (one
backward pass per task). Here each task's gradient is taken only with respect to the
*features* (the tensors where the shared part hands over to the task part: a batch x
features block each), which costs a pass through the heads alone. The Gramian of those
gradients gives the aggregator's task weights, and one backward pass carries
``sum_t w_t * d loss_t / d features`` into the trunk. This is MGDA-UB (Sener & Koltun,
"Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018), generalised to every
aggregator that weighs the task gradients from their Gramian, as LibMTL's ``rep_grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _as_list(features: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [features] if isinstance(features, Tensor) else list(features)


def feature_jacobian(losses: Sequence[Tensor], features: Tensor | Sequence[Tensor]) -> Tensor:
    """``[T, N]``: row ``t`` is task ``t``'s gradient with respect to every feature element
    (all features flattened and concatenated; zero where a loss does not reach a feature)."""
    feats = _as_list(features)
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, feats, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    # bf16 features (autocast): the Gramian in at least fp32
                    (torch.zeros_like(f) if g is None else g)
                    .flatten()
                    .to(torch.promote_types(f.dtype, torch.float32))
                    for g, f in zip(grads, feats, strict=True)
                ]
            )
        )
    return torch.stack(rows)


def backward_weighted(
    losses: Sequence[Tensor],
    features: Tensor | Sequence[Tensor],
    jacobian: Tensor,
    weights: Tensor,
) -> None:
    """One backward pass of ``sum(losses)`` in which the features pass on
    ``weights @ jacobian`` instead: the task-specific parameters get their own losses'
    gradients, the shared ones the weighted combination's."""
    feats = _as_list(features)
    combined = weights.to(jacobian.dtype) @ jacobian
    handles, start = [], 0
    for feature in feats:
        n = feature.numel()
        part = combined[start : start + n].view_as(feature).to(feature.dtype)
        handles.append(feature.register_hook(lambda _, part=part: part))
        start += n
    try:
        torch.stack(list(losses)).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
