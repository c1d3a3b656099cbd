"""The training loop. It reports through callbacks; tracking and pruning plug in from outside."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mtl_models.metrics import summarize, task_metrics
from mtl_models.nn.model import MultiTaskModel
from mtl_models.train.acceleration import Acceleration
from mtl_models.train.affinity import affinity_unavailable, lookahead_affinity
from mtl_models.train.fine_tune import FineTune
from mtl_models.train.fine_tune import scheduler as fine_tune_scheduler
from mtl_models.train.loaders import Inputs, head_of, to_device
from mtl_models.weighting import WeightingMethod, check_weighting

Batch = tuple[Inputs, Tensor]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Predictions:
    """Labels and decoded predictions over a loader, in task order."""

    labels: np.ndarray  # [N, T], NaN = missing
    predictions: np.ndarray  # [N, T]
    probas: dict[str, np.ndarray]  # task -> [N, K] for kinds with class probabilities


@torch.no_grad()
def predict(model: MultiTaskModel, loader: Iterable[Batch], device: torch.device) -> Predictions:
    model.eval()
    labels, preds, probas = [], [], {name: [] for name in model.task_names}
    for inputs, batch_labels in loader:
        decoded = model.decode(model(to_device(inputs, device)))
        labels.append(batch_labels.numpy())
        preds.append(
            np.stack([decoded[n].prediction.float().cpu().numpy() for n in model.task_names], 1)
        )
        for name, d in decoded.items():
            if d.proba is not None:
                probas[name].append(d.proba.cpu().numpy())
    return Predictions(
        labels=np.concatenate(labels),
        predictions=np.concatenate(preds),
        probas={name: np.concatenate(p) for name, p in probas.items() if p},
    )


def score_predictions(
    model: MultiTaskModel, result: Predictions, majority: Mapping[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    return {
        task.name: task_metrics(
            task,
            result.labels[:, t],
            result.predictions[:, t],
            None if majority is None else majority.get(task.name),
        )
        for t, task in enumerate(model.tasks)
    }


@dataclass
class EpochLog:
    epoch: int  # 1-based
    train_loss: float  # mean combined loss over the epoch's steps
    task_losses: dict[str, float]  # mean unweighted loss per task
    weights: dict[str, float]  # mean effective weight per task (empty if the method has none)
    val_metrics: dict[str, dict[str, Any]]
    val_score: float  # mean primary score over tasks
    seconds: float
    is_best: bool
    # Mean pairwise cosine of task gradients on the shared parameters, [T][T], for methods
    # that compute per-task gradients; None otherwise.
    gradient_cosine: list[list[float]] | None = None
    # Mean lookahead affinity Z[i][j] (task i's step -> task j's loss), [T][T], when the
    # trainer measures it (``affinity_every``); NaN for a pair never measured this epoch.
    affinity: list[list[float]] | None = None
    # Mean gate weight per task and expert, ``{task: {expert: w}}``, for architectures with
    # gates (MMoE, CGC/PLE, DSelect-k): which experts each task used this epoch.
    gate_weights: dict[str, dict[str, float]] | None = None


@dataclass
class EpochStats:
    loss: float  # mean weighted loss over the epoch's steps
    task_losses: Tensor  # [T] mean unweighted loss per task
    weights: Tensor | None  # [T] mean effective weight per task
    gradient_cosine: Tensor | None  # [T, T] mean cosine of task gradients
    affinity: Tensor | None = None  # [T, T] mean lookahead affinity
    gate_weights: Tensor | None = None  # [T, E] mean gate weights


@dataclass
class FitResult:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -math.inf
    stopped_early: bool = False


class Callback:
    """Hooks the trainer calls; override what you need. Raising stops training (pruning)."""

    def on_train_begin(self, trainer: Trainer) -> None:
        pass

    def on_epoch_end(self, log: EpochLog) -> None:
        pass

    def on_train_end(self, result: FitResult) -> None:
        pass


class Trainer:
    """AdamW + cosine schedule; early stopping on the mean validation score, best weights kept."""

    def __init__(
        self,
        model: MultiTaskModel,
        weighting: WeightingMethod,
        *,
        epochs: int,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int | None = None,
        min_delta: float = 0.0,
        device: torch.device | str = "cpu",
        majority: Mapping[str, float] | None = None,
        callbacks: Sequence[Callback] = (),
        affinity_every: int | None = None,
        affinity_lr: float | None = None,
        affinity_samples: int | None = None,
        acceleration: Acceleration | None = None,
        fine_tune: FineTune | None = None,
    ):
        acceleration = acceleration or Acceleration()
        self.fine_tune = fine_tune = fine_tune or FineTune()
        fine_tune.prepare(model)
        check_weighting(
            type(weighting),
            type(weighting).__name__,
            shares_blocks=bool(model.shared_parameters()),
            data_parallel=acceleration.data_parallel,
        )
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 epoch or None, got {patience}")
        if affinity_every is not None and affinity_every < 1:
            raise ValueError(f"affinity_every must be >= 1 step or None, got {affinity_every}")
        unavailable = affinity_unavailable(
            shares_blocks=bool(model.shared_parameters()),
            data_parallel=acceleration.data_parallel,
        )
        if affinity_every is not None and unavailable:
            raise ValueError(f"affinity cannot be measured: {unavailable}; turn it off")
        self.affinity_every = affinity_every
        self.affinity_lr = affinity_lr
        self.affinity_samples = affinity_samples  # first n samples of the batch; None = all
        self._step = 0
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.acceleration = acceleration
        self.forward = acceleration.forward(self.model, self.device)
        self.weighting = weighting.to(self.device)
        self.epochs = epochs
        self.patience = patience
        self.min_delta = min_delta
        self.majority = majority
        self.callbacks = list(callbacks)
        groups = fine_tune.param_groups(model, weighting.optimizer_parameters())
        self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
        self.scheduler = fine_tune_scheduler(self.optimizer, fine_tune, epochs)
        self._epoch = 0

    def train_epoch(self, loader: Iterable[Batch]) -> EpochStats:
        """One pass over ``loader``; statistics are accumulated on the device, read once."""
        self.model.train()
        self.fine_tune.set_mode(self.model, self._epoch)
        weighting = self.weighting
        shared = self.model.shared_parameters() if weighting.needs_task_gradients else []
        n_tasks = len(self.model.tasks)
        total = torch.zeros((), device=self.device)
        task_sum = torch.zeros(n_tasks, device=self.device)
        weight_sum = torch.zeros(n_tasks, device=self.device)
        cosine_sum = torch.zeros(n_tasks, n_tasks, device=self.device)
        affinity_sum = torch.zeros(n_tasks, n_tasks, device=self.device)
        affinity_count = torch.zeros(n_tasks, n_tasks, device=self.device)
        gate_sum: Tensor | None = None
        steps = weighted_steps = cosine_steps = 0
        for inputs, labels in loader:
            inputs = self.acceleration.layout(to_device(inputs, self.device))
            labels = labels.to(self.device, non_blocking=True)
            if self.affinity_every and self._step % self.affinity_every == 0:
                lr = self.affinity_lr or self.optimizer.param_groups[-1]["lr"]
                n = self.affinity_samples
                z = lookahead_affinity(self.model, head_of(inputs, n), labels[:n], lr)
                affinity_sum += torch.nan_to_num(z)
                affinity_count += ~torch.isnan(z)
            self._step += 1
            with self.acceleration.autocast(self.device):
                outputs, features = self.forward(inputs)
                losses = self.model.task_loss_terms(outputs, labels)
            self.optimizer.zero_grad(set_to_none=True)
            step = weighting.backward(losses, features, shared)
            gates = self.model.gate_weights()
            if gates is not None:
                used = torch.stack([gates[name] for name in self.model.task_names])
                gate_sum = used if gate_sum is None else gate_sum + used
            self.optimizer.step()
            if weighting.needs_losses_after_step:
                with torch.no_grad():
                    weighting.after_step(self.model.task_losses(self.model(inputs), labels))
            total += step.loss
            task_sum += torch.stack([loss.detach() for loss in losses])
            if step.weights is not None:
                weight_sum += step.weights
                weighted_steps += 1
            if step.gradient_cosine is not None:
                cosine_sum += step.gradient_cosine
                cosine_steps += 1
            steps += 1
        if steps == 0:
            raise ValueError("the training loader yielded no batches")
        weighting.end_epoch()
        self.scheduler.step()
        self._epoch += 1
        return EpochStats(
            loss=float(total) / steps,
            task_losses=(task_sum / steps).cpu(),
            weights=(weight_sum / weighted_steps).cpu() if weighted_steps else None,
            gradient_cosine=(cosine_sum / cosine_steps).cpu() if cosine_steps else None,
            affinity=(affinity_sum / affinity_count).cpu() if self.affinity_every else None,
            gate_weights=None if gate_sum is None else (gate_sum / steps).cpu(),
        )

    def _gate_table(self, gates: Tensor | None) -> dict[str, dict[str, float]] | None:
        if gates is None:
            return None
        experts = self.model.expert_names()
        return {
            name: dict(zip(experts, row, strict=True))
            for name, row in zip(self.model.task_names, gates.tolist(), strict=True)
        }

    def fit(self, train_loader: DataLoader[Batch], val_loader: DataLoader[Batch]) -> FitResult:
        result = FitResult()
        best_state: dict[str, Tensor] | None = None
        waited = 0
        for cb in self.callbacks:
            cb.on_train_begin(self)
        names = self.model.task_names
        for epoch in range(1, self.epochs + 1):
            start = time.perf_counter()
            stats = self.train_epoch(train_loader)
            val_metrics = score_predictions(
                self.model, predict(self.model, val_loader, self.device), self.majority
            )
            val_score = summarize(val_metrics)["mean_score"]
            improved = val_score > result.best_score + self.min_delta
            if improved:
                result.best_score, result.best_epoch, waited = val_score, epoch, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                waited += 1
            log = EpochLog(
                epoch=epoch,
                train_loss=stats.loss,
                task_losses=dict(zip(names, stats.task_losses.tolist(), strict=True)),
                weights=(
                    {}
                    if stats.weights is None
                    else dict(zip(names, stats.weights.tolist(), strict=True))
                ),
                gradient_cosine=(
                    None if stats.gradient_cosine is None else stats.gradient_cosine.tolist()
                ),
                affinity=None if stats.affinity is None else stats.affinity.tolist(),
                gate_weights=self._gate_table(stats.gate_weights),
                val_metrics=val_metrics,
                val_score=val_score,
                seconds=time.perf_counter() - start,
                is_best=improved,
            )
            result.history.append(log)
            for cb in self.callbacks:
                cb.on_epoch_end(log)
            if self.patience is not None and waited >= self.patience:
                result.stopped_early = True
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        for cb in self.callbacks:
            cb.on_train_end(result)
        return result
