"""``train``: fit the multi-task model, log the run and a servable pyfunc to MLflow."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import mlflow
import numpy as np
import torch

from mtl_models.augment.policy import ResolvedPolicy
from mtl_models.inputs import ImageInput, InputSpec
from mtl_models.losses import ClassWeighting, class_weights
from mtl_models.metrics import majority_labels
from mtl_models.nn.model import ModelSpec, MultiTaskModel, build_model, save_checkpoint
from mtl_models.tasks import TaskSpec
from mtl_models.train.acceleration import Acceleration, bf16_supported
from mtl_models.train.affinity import mean_affinity, suggest_groups
from mtl_models.train.loaders import MultiTaskDataset, Shard, make_loader, make_schedule_loader
from mtl_models.train.trainer import Callback, FitResult, Trainer
from mtl_models.weighting import build_weighting
from pipelines import tracking
from pipelines.config import Params, overlay
from pipelines.files import ProjectPaths, atomic_dir, write_json
from pipelines.services import plots
from pipelines.services.best_params import apply_best_params
from pipelines.services.distributed import device_for, process_group
from pipelines.serving import example_request, log_pyfunc_model
from pipelines.stages.augment import (
    image_input,
    resolve_augmentation,
    write_augmentation_report,
)
from pipelines.stages.split import Inputs, load_input_specs, load_split, split_digest


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit_task_specs(
    tasks: list[TaskSpec],
    train_labels: np.ndarray,
    class_weighting: Mapping[str, ClassWeighting] | None = None,
) -> list[TaskSpec]:
    """What the losses learn from the training split only: regression targets' mean and
    spread (for standardising), and each discrete task's class weights."""
    fitted = []
    for t, task in enumerate(tasks):
        values = train_labels[:, t][~np.isnan(train_labels[:, t])]
        if not task.is_discrete:
            std = float(values.std()) if len(values) > 1 else 1.0
            task = replace(task, target_mean=float(values.mean()), target_std=std or 1.0)
        else:
            method = (class_weighting or {}).get(task.name, "none")
            assert task.n_classes is not None
            task = replace(task, class_weights=class_weights(values, task.n_classes, method))
        fitted.append(task)
    return fitted


def model_spec(params: Params, tasks: list[TaskSpec], inputs: Sequence[InputSpec]) -> ModelSpec:
    m = params.model
    image = next((i for i in inputs if isinstance(i, ImageInput)), ImageInput("image"))
    return ModelSpec(
        tasks=tuple(tasks),
        backbone=m.backbone.name,
        backbone_args={"width": m.backbone.width, "depth": m.backbone.depth},
        shared_depth=m.shared_depth,
        head_hidden=m.head_hidden,
        dropout=m.dropout,
        image_size=image.size,
        channels=image.channels,
        inputs=tuple(inputs),
    )


@dataclass
class Fitted:
    """A trained model with what produced it."""

    model: MultiTaskModel
    spec: ModelSpec
    result: FitResult
    tasks: list[TaskSpec]
    device: torch.device


def fit(
    params: Params,
    train_data: tuple[Inputs, np.ndarray],
    val_data: tuple[Inputs, np.ndarray],
    policy: ResolvedPolicy,
    callbacks: Sequence[Callback] = (),
    input_specs: Sequence[InputSpec] = (),
    shard: Shard | None = None,
) -> Fitted:
    """Build the model, weighting and loaders ``params`` describe and train; ``train``,
    every tuning trial and every baseline go through here. ``input_specs`` are the split's
    (``load_input_specs``): the encodings the served model applies to raw inputs. ``shard``:
    this process's part of a DDP run (``pipelines.services.distributed``)."""
    shard = shard or Shard()
    cfg = params.train
    (train_inputs, train_labels), (val_inputs, val_labels) = train_data, val_data
    seed_everything(cfg.seed)
    per_class = {name: params.class_weighting(name) for name in params.tasks}
    tasks = fit_task_specs(params.task_specs(), train_labels, per_class)
    spec = model_spec(params, tasks, input_specs or _image_specs(train_inputs))
    model = build_model(spec)
    weighting = build_weighting(
        cfg.weighting.method, [t.name for t in tasks], **cfg.weighting_kwargs()
    )
    device = device_for(params, shard)
    if shard.world_size > 1 and device.type == "cuda":
        # small per-GPU batches: normalise over the global batch, as one process would
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    transform = policy.build(seed=cfg.seed)
    train_loader = make_schedule_loader(
        MultiTaskDataset(train_inputs, train_labels, transform, image_input(params)),
        cfg.batch_size,
        schedule=cfg.schedule,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        shard=shard,
    )
    val_loader = make_loader(MultiTaskDataset(val_inputs, val_labels), 256, shuffle=False)
    trainer = Trainer(
        model,
        weighting,
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        patience=cfg.patience,
        device=device,
        majority=majority_labels(train_labels, tasks),
        callbacks=callbacks,
        affinity_every=cfg.affinity.every if measures_affinity(params) else None,
        affinity_lr=cfg.affinity.lr,
        affinity_samples=cfg.affinity.samples,
        acceleration=acceleration(params, device, shard),
    )
    result = trainer.fit(train_loader, val_loader)
    return Fitted(model=model, spec=spec, result=result, tasks=tasks, device=device)


def acceleration(params: Params, device: torch.device, shard: Shard) -> Acceleration:
    """``train.precision``/``channels_last``/``compile`` resolved for the device: ``auto``
    means bf16 autocast and channels-last images on CUDA, plain fp32 elsewhere."""
    cfg = params.train
    cuda = device.type == "cuda"
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda and bf16_supported(device))
    wanted = cuda if cfg.channels_last == "auto" else cfg.channels_last
    return Acceleration(
        bf16=bf16,
        channels_last=bool(wanted) and image_input(params) is not None,
        compile=cfg.compile,
        data_parallel=shard.world_size > 1,
    )


def _image_specs(inputs: Inputs) -> list[InputSpec]:
    """Specs of image-only inputs, read off the arrays (callers without a split on disk)."""
    specs: list[InputSpec] = []
    for name, array in inputs.items():
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != array.shape[2]:
            raise ValueError(f"input '{name}' is not square uint8 images: pass input_specs")
        specs.append(ImageInput(name, array.shape[1], array.shape[3]))
    return specs


def measures_affinity(params: Params) -> bool:
    """Affinity steps the shared blocks; with none (``shared_depth: 0``) there is nothing to
    measure, and a search over ``shared_depth`` may well sample 0."""
    return (
        params.train.affinity.enabled
        and params.model.shared_depth != 0
        and params.train.schedule == "joint"  # one task per batch leaves nothing to compare
    )


def write_affinity_report(
    params: Params, names: list[str], result: FitResult, paths: ProjectPaths
) -> dict[str, object]:
    """``reports/affinity.json`` (always, so DVC finds its output), its heatmap and, per
    epoch, a heatmap and the affinity-over-epochs plot in the active MLflow run."""
    cfg = params.train.affinity
    if not measures_affinity(params):
        note = (
            "train.affinity.enabled is false"
            if not cfg.enabled
            else "train.schedule is alternating: one task per batch"
            if params.train.schedule != "joint"
            else "model.shared_depth is 0: no shared blocks to step"
        )
        report: dict[str, object] = {"enabled": False, "note": note}
        write_json(paths.affinity_file, report)
        if cfg.enabled:
            print(f"train: no task affinity measured ({note})")
        return report
    epochs = [log.epoch for log in result.history]
    per_epoch = np.array([log.affinity for log in result.history], dtype=float)
    matrix = mean_affinity(per_epoch)
    grouping = suggest_groups(matrix, names, cfg.max_groups)

    def table(m: np.ndarray) -> dict[str, dict[str, float | None]]:
        def cell(value: float) -> float | None:
            return None if np.isnan(value) else round(float(value), 6)

        return {a: {b: cell(m[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}

    report = {
        "enabled": True,
        "every": cfg.every,
        "definition": "Z[i][j] = 1 - L_j(after a step on task i) / L_j(before), mean over epochs",
        "matrix": table(matrix),
        "per_epoch": {str(e): table(m) for e, m in zip(epochs, per_epoch, strict=True)},
        "grouping": {
            "max_groups": cfg.max_groups,
            "groups": grouping.groups,
            "score": round(grouping.score, 6),
            "exhaustive": grouping.exhaustive,
        },
    }
    write_json(paths.affinity_file, report)
    plots.save(
        plots.affinity_heatmap(matrix, names, f"lookahead affinity, mean of {len(epochs)} epochs"),
        paths.plots_dir / "affinity.png",
    )
    for epoch, m in zip(epochs, per_epoch, strict=True):
        title = f"lookahead affinity, epoch {epoch}"
        artifact = f"plots/affinity/epoch_{epoch:03d}.png"
        plots.log_figure(plots.affinity_heatmap(m, names, title), artifact)
    plots.log_figure(
        plots.affinity_over_epochs(per_epoch, epochs, names), "plots/affinity_over_epochs.png"
    )
    shown = " | ".join(", ".join(g) for g in grouping.groups)
    print(f"train: task groups by affinity (at most {cfg.max_groups}): {shown}")
    return report


def train(params: Params, paths: ProjectPaths) -> dict[str, object]:
    """Train, write ``models/`` and log everything to one MLflow run; returns ``run.json``.

    Under ``torchrun`` every process trains its shard of each batch (DDP) and only rank 0
    logs and writes; the others return an empty dict."""
    params, tuned = apply_best_params(params, paths)
    with process_group(params) as shard:
        if shard.world_size > 1 and params.train.affinity.enabled:
            params = overlay(params, {"train.affinity.enabled": False}, source="DDP")
            if shard.rank == 0:
                print("train: no task affinity under DDP (it steps the model outside DDP)")
        return _train(params, tuned, paths, shard)


def _train(
    params: Params, tuned: dict[str, Any] | None, paths: ProjectPaths, shard: Shard
) -> dict[str, object]:
    cfg = params.train
    tasks = params.task_specs()
    train_inputs, train_labels = load_split(paths, "train", tasks)
    val_inputs, val_labels = load_split(paths, "val", tasks)
    input_specs = load_input_specs(paths)
    policy = resolve_augmentation(params)  # fails before training
    train_data, val_data = (train_inputs, train_labels), (val_inputs, val_labels)
    if shard.rank != 0:  # trains its shard; rank 0 logs and writes
        fit(params, train_data, val_data, policy, input_specs=input_specs, shard=shard)
        return {}
    print(policy.describe())

    with tracking.training_run(params, paths.root, run_name="train") as run:
        mlflow.set_tags({"mtlflow.stage": "train", "data.split_sha256": split_digest(paths)})
        if tuned is not None:
            mlflow.set_tags({"optuna.study": tuned["study"], "optuna.trial": tuned["trial"]})
            mlflow.log_artifact(str(paths.best_params))
        tracking.log_split_dataset(paths.splits_dir / "train.csv", "training")
        tracking.log_split_dataset(paths.splits_dir / "val.csv", "validation")
        report, preview = write_augmentation_report(
            policy,
            tasks,
            train_inputs.get(image_input(params) or ""),
            train_labels,
            paths,
            params.augment.preview_samples,
        )
        mlflow.log_artifact(str(report))
        if preview is not None:
            mlflow.log_artifact(str(preview), artifact_path="plots")
        mlflow.log_metrics(
            {"augment/kept": len(policy.kept), "augment/excluded": len(policy.excluded)}
        )
        print(
            f"train: {len(train_labels)} train / {len(val_labels)} val samples, "
            f"{len(tasks)} tasks, weighting {cfg.weighting.method}, "
            f"device {device_for(params, shard)}"
            + (f" x {shard.world_size} processes (DDP)" if shard.world_size > 1 else "")
            + f", MLflow run {run.info.run_id}"
        )
        fitted = fit(
            params,
            train_data,
            val_data,
            policy,
            callbacks=[tracking.EpochPrinter(), tracking.MlflowEpochLogger()],
            input_specs=input_specs,
            shard=shard,
        )
        result, model, spec = fitted.result, fitted.model, fitted.spec
        mlflow.log_metrics({"best_epoch": result.best_epoch, "best_val_score": result.best_score})
        print(f"train: best val/score {result.best_score:.4f} at epoch {result.best_epoch}")

        curves = paths.plots_dir / "learning_curves.png"
        plots.save(plots.learning_curves(result.history), curves)
        mlflow.log_artifact(str(curves), artifact_path="plots")
        if result.history[-1].gradient_cosine is not None:  # gradient methods only
            plots.log_figure(plots.gradient_cosine(result.history), "plots/gradient_cosine.png")
        report = write_affinity_report(params, [t.name for t in tasks], result, paths)
        if report.get("enabled"):
            mlflow.log_artifact(str(paths.affinity_file))
            mlflow.log_artifact(str(paths.plots_dir / "affinity.png"), artifact_path="plots")

        with atomic_dir(paths.models_dir) as scratch:
            save_checkpoint(model.cpu(), spec, scratch)
            info = log_pyfunc_model(scratch, example_request(spec, paths))
            run_info = {
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "model_uri": info.model_uri,
                "best_epoch": result.best_epoch,
                "best_val_score": result.best_score,
            }
            write_json(scratch / paths.run_info.name, run_info)
    return run_info
