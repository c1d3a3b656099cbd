"""Lookahead inter-task affinity (Fifty et al., NeurIPS 2021, "Efficiently Identifying Task
Groupings for Multi-Task Learning").

``Z[i, j] = 1 - L_j(after) / L_j(before)``: how much one gradient step of the shared
parameters on task ``i``'s loss alone lowers task ``j``'s loss on the same batch. Positive:
``i`` helps ``j``; negative: ``i`` hurts ``j``. The parameters are restored afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mtl_models.nn.model import MultiTaskModel
from mtl_models.train.loaders import Inputs


def lookahead_affinity(model: MultiTaskModel, images: Inputs, labels: Tensor, lr: float) -> Tensor:
    """``[T, T]`` affinity on one batch; NaN where a task has no labelled sample in it.

    The forward passes run in eval mode, so dropout noise does not swamp the small change a
    single step makes; the model's mode and shared parameters are restored afterwards.
    """
    shared = model.shared_parameters()
    if not shared:
        raise ValueError("affinity needs shared parameters (shared_depth >= 1)")
    n = len(model.task_names)
    was_training = model.training
    model.eval()
    try:
        terms = model.task_loss_terms(model(images), labels)
        before = torch.stack([t.detach() for t in terms])
        present = (~torch.isnan(labels)).any(dim=0) & (before > 0)
        grads = [
            torch.autograd.grad(term, shared, retain_graph=i < n - 1, allow_unused=True)
            for i, term in enumerate(terms)
        ]
        saved = [p.detach().clone() for p in shared]
        rows = []
        with torch.no_grad():
            for task_grads in grads:
                for p, g in zip(shared, task_grads, strict=True):
                    if g is not None:
                        p.sub_(lr * g)
                after = model.task_losses(model(images), labels)
                rows.append(1.0 - after / before.clamp_min(1e-12))
                for p, s in zip(shared, saved, strict=True):
                    p.copy_(s)
    finally:
        model.train(was_training)
    affinity = torch.stack(rows)
    valid = present[:, None] & present[None, :]
    return torch.where(valid, affinity, torch.full_like(affinity, float("nan")))


def mean_affinity(per_epoch: Sequence[Sequence[Sequence[float]]]) -> np.ndarray:
    """Average ``[T, T]`` matrices over epochs, ignoring pairs an epoch did not measure."""
    stack = np.asarray(per_epoch, dtype=float)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pair never measured: NaN
        return np.nanmean(stack, axis=0)


@dataclass(frozen=True)
class Grouping:
    groups: list[list[str]]
    score: float  # sum over tasks of the mean affinity a task receives from its group mates
    exhaustive: bool


EXHAUSTIVE_LIMIT = 10  # Bell(10) = 115,975 partitions: a second in Python


def _partitions(n: int, max_groups: int) -> Iterator[list[int]]:
    """Every assignment of n items to at most ``max_groups`` unlabelled groups (restricted
    growth strings)."""
    labels = [0] * n

    def extend(i: int, used: int) -> Iterator[list[int]]:
        if i == n:
            yield list(labels)
            return
        for g in range(min(used + 1, max_groups)):
            labels[i] = g
            yield from extend(i + 1, max(used, g + 1))

    yield from extend(0, 0)


def _score(matrix: np.ndarray, labels: Sequence[int]) -> float:
    total = 0.0
    for j, g in enumerate(labels):
        mates = [i for i, h in enumerate(labels) if h == g and i != j]
        values = [matrix[i, j] for i in mates if np.isfinite(matrix[i, j])]
        total += float(np.mean(values)) if values else 0.0
    return total


def suggest_groups(matrix: np.ndarray, names: Sequence[str], max_groups: int) -> Grouping:
    """The partition of the tasks into at most ``max_groups`` groups that maximises the
    affinity each task receives from the tasks it would be trained with (a task alone gets 0).

    Exhaustive up to ``EXHAUSTIVE_LIMIT`` tasks; beyond, greedy merging of the pair of groups
    that raises the score most.
    """
    n = len(names)
    if matrix.shape != (n, n):
        raise ValueError(f"affinity matrix {matrix.shape} does not match {n} tasks")
    if n <= EXHAUSTIVE_LIMIT:
        best = max(_partitions(n, max_groups), key=lambda labels: _score(matrix, labels))
        labels, exhaustive = list(best), True
    else:
        labels, exhaustive = _greedy(matrix, max_groups), False
    groups: dict[int, list[str]] = {}
    for name, g in zip(names, labels, strict=True):
        groups.setdefault(g, []).append(name)
    return Grouping(list(groups.values()), _score(matrix, labels), exhaustive)


def _greedy(matrix: np.ndarray, max_groups: int) -> list[int]:
    """Start from singletons; merge the pair of groups that raises the score most, while it
    raises it or while there are more than ``max_groups`` groups."""
    labels = list(range(len(matrix)))
    while len(set(labels)) > 1:
        current = _score(matrix, labels)
        ids = sorted(set(labels))
        merges = [[a if g == b else g for g in labels] for a in ids for b in ids if a < b]
        best = max(merges, key=lambda merged: _score(matrix, merged))
        if _score(matrix, best) <= current and len(ids) <= max_groups:
            break
        labels = best
    return labels


def affinity_unavailable(
    *, shares_blocks: bool, joint_batches: bool = True, data_parallel: bool = False
) -> str | None:
    """Why lookahead affinity cannot be measured in a setting (None: it can). The one home of
    the rule: the trainer refuses such a setting, the pipeline skips the measurement with this
    reason."""
    if not shares_blocks:
        return "no shared blocks to step (shared_depth=0)"
    if not joint_batches:
        return "the alternating schedule trains one task per batch: nothing to compare"
    if data_parallel:
        return "affinity steps the model outside DDP"
    return None
