"""The training loop. It reports through callbacks; tracking and pruning plug in from outside."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mtl_models.metrics import summarize
from mtl_models.nn.model import MultiTaskModel
from mtl_models.train import resume
from mtl_models.train.acceleration import Acceleration, ProcessMean
from mtl_models.train.affinity import affinity_unavailable, lookahead_affinity
from mtl_models.train.fine_tune import FineTune
from mtl_models.train.fine_tune import scheduler as fine_tune_scheduler
from mtl_models.train.loaders import Inputs, head_of, to_device
from mtl_models.train.prediction import predict, score_predictions
from mtl_models.weighting import WeightingMethod, check_weighting

Batch = tuple[Inputs, Tensor]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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

    def on_resume(self, history: list[EpochLog]) -> None:
        """Training continues from a checkpoint after the epochs of ``history``."""

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
        weighting.process_mean = ProcessMean() if acceleration.data_parallel else None
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
            # under DDP, per-task gradients are averaged here rather than by DDP
            with self.acceleration.own_reduction(self.forward, weighting.needs_task_gradients):
                with self.acceleration.autocast(self.device):
                    outputs, features = self.forward(inputs)
                    losses = self.model.task_loss_terms(outputs, labels)
                losses = self.acceleration.global_losses(losses)
                self.optimizer.zero_grad(set_to_none=True)
                step = weighting.backward(losses, features, shared)
            if weighting.needs_task_gradients:
                self.acceleration.average_gradients(self.model.parameters())
            gates = self.model.gate_weights()
            if gates is not None:
                used = torch.stack([gates[name] for name in self.model.task_names])
                gate_sum = used if gate_sum is None else gate_sum + used
            self.optimizer.step()
            if weighting.needs_losses_after_step:
                with torch.no_grad():
                    after = self.model.task_losses(self.model(inputs), labels)
                    weighting.after_step(torch.stack(self.acceleration.global_losses(after)))
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

    def fit(
        self,
        train_loader: DataLoader[Batch],
        val_loader: DataLoader[Batch],
        checkpoint: resume.Checkpoint | None = None,
    ) -> FitResult:
        """Train up to ``epochs``; with a ``checkpoint``, continue from its state and save
        the whole training state after every epoch (``mtl_models.train.resume``)."""
        result, best_state, waited = FitResult(), None, 0
        if checkpoint is not None and checkpoint.state is not None:
            result, best_state, waited = self._restore(checkpoint.state, train_loader)
        for cb in self.callbacks:
            cb.on_train_begin(self)
            if result.history:
                cb.on_resume(result.history)
        names = self.model.task_names
        first = self.epochs + 1 if result.stopped_early else self._epoch + 1
        for epoch in range(first, self.epochs + 1):
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
            result.stopped_early = self.patience is not None and waited >= self.patience
            if checkpoint is not None:
                checkpoint.save(self._state(result, best_state, waited, train_loader))
            if result.stopped_early:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        for cb in self.callbacks:
            cb.on_train_end(result)
        return result

    def _state(
        self, result: FitResult, best: dict[str, Tensor] | None, waited: int, loader: object
    ) -> dict[str, object]:
        return {
            "epoch": self._epoch,
            "step": self._step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "weighting": resume.module_state(self.weighting),
            "best_state": best,
            "waited": waited,
            "result": {
                **{k: getattr(result, k) for k in ("best_epoch", "best_score", "stopped_early")},
                "history": resume.history_json(result.history),
            },
            "random": resume.global_random_state(),
            "loader": resume.loader_state(loader),
        }

    def _restore(
        self, state: dict[str, Any], loader: object
    ) -> tuple[FitResult, dict[str, Tensor] | None, int]:
        self._epoch, self._step = int(state["epoch"]), int(state["step"])
        self.model.load_state_dict(state["model"])
        self.weighting.prepare_resume()
        resume.load_module_state(self.weighting, state["weighting"], self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        resume.set_global_random_state(state["random"])
        resume.set_loader_state(loader, state["loader"])
        saved = state["result"]
        history = [EpochLog(**log) for log in json.loads(saved["history"])]
        result = FitResult(
            history, saved["best_epoch"], saved["best_score"], saved["stopped_early"]
        )
        best = state["best_state"]
        best = None if best is None else {k: v.to(self.device) for k, v in best.items()}
        return result, best, int(state["waited"])
