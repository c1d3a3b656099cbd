"""Fitting a model as params describe it: the one path that ``train``, every tuning trial,
every single-task baseline and the benchmarks share."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtl_models.augment.policy import ResolvedPolicy
from mtl_models.inputs import ImageInput, InputSpec
from mtl_models.losses import ClassWeighting
from mtl_models.metrics import majority_labels
from mtl_models.nn.architectures import ARCHITECTURES
from mtl_models.nn.backbones import BACKBONES, Backbone
from mtl_models.nn.model import ModelSpec, MultiTaskModel, build_backbone, build_model
from mtl_models.nn.weights import WeightsError, WeightsReport, load_initial_weights
from mtl_models.tasks import TaskSpec, fit_task
from mtl_models.train.acceleration import Acceleration
from mtl_models.train.affinity import affinity_unavailable
from mtl_models.train.fine_tune import FineTune
from mtl_models.train.loaders import MultiTaskDataset, Shard, make_loader, make_schedule_loader
from mtl_models.train.resume import Checkpoint
from mtl_models.train.trainer import Callback, FitResult, Trainer
from mtl_models.weighting import build_weighting
from pipelines.config import Params
from pipelines.data.splits import ArraysByInput
from pipelines.errors import ConfigError
from pipelines.services.augmentation import augmented_input
from pipelines.services.distributed import check_device, device_for


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit_task_specs(
    tasks: list[TaskSpec],
    train_labels: np.ndarray,
    class_weighting: Mapping[str, ClassWeighting] | None = None,
) -> list[TaskSpec]:
    """What the losses learn from the training split only (each kind's ``fit``: a value's
    mean and spread, a discrete task's class weights)."""
    methods = class_weighting or {}
    return [
        fit_task(task, train_labels[:, t], methods.get(task.name, "none"))
        for t, task in enumerate(tasks)
    ]


def model_spec(params: Params, tasks: list[TaskSpec], inputs: Sequence[InputSpec]) -> ModelSpec:
    m = params.model
    image = next((i for i in inputs if isinstance(i, ImageInput)), ImageInput("image"))
    name, args = m.backbone.name, m.backbone.args()
    return ModelSpec(
        tasks=tuple(tasks),
        backbone=name,
        backbone_args=args if name == "auto" else BACKBONES.get(name).recorded_args(name, args),
        shared_depth=m.shared_depth,
        architecture=m.architecture.name,
        architecture_args=m.architecture.args(),
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
    train_data: tuple[ArraysByInput, np.ndarray],
    val_data: tuple[ArraysByInput, np.ndarray],
    policy: ResolvedPolicy,
    callbacks: Sequence[Callback] = (),
    input_specs: Sequence[InputSpec] = (),
    shard: Shard | None = None,
    checkpoint: Checkpoint | None = None,
) -> Fitted:
    """Build the model, weighting and loaders ``params`` describe and train; ``train``,
    every tuning trial and every baseline go through here. ``input_specs`` are the split's
    (``load_input_specs``): the encodings the served model applies to raw inputs. ``shard``:
    this process's part of a DDP run (``pipelines.services.distributed``); ``checkpoint``:
    where the trainer saves its state after every epoch, and the state to continue from."""
    shard = shard or Shard()
    cfg = params.train
    (train_inputs, train_labels), (val_inputs, val_labels) = train_data, val_data
    seed_everything(cfg.seed)
    per_class = {name: params.class_weighting(name) for name in params.tasks}
    tasks = fit_task_specs(params.task_specs(), train_labels, per_class)
    spec = model_spec(params, tasks, input_specs or _image_specs(train_inputs))
    backbone, _ = starting_backbone(params, spec)
    model = build_model(spec, backbone)
    weighting = build_weighting(
        cfg.weighting.method, [t.name for t in tasks], **cfg.weighting_kwargs()
    )
    device = device_for(params, shard)
    if shard.world_size > 1 and device.type == "cuda":
        # small per-GPU batches: normalise over the global batch, as one process would
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    transform = policy.build(seed=cfg.seed)
    train_loader = make_schedule_loader(
        MultiTaskDataset(train_inputs, train_labels, transform, augmented_input(params)),
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
        affinity_every=cfg.affinity.every if affinity_note(params) is None else None,
        affinity_lr=cfg.affinity.lr,
        affinity_samples=cfg.affinity.samples,
        acceleration=acceleration_for(params, device, shard),
        fine_tune=FineTune(**cfg.fine_tune.model_dump()),
    )
    result = trainer.fit(train_loader, val_loader, checkpoint)
    return Fitted(model=model, spec=spec, result=result, tasks=tasks, device=device)


def acceleration_for(params: Params, device: torch.device, shard: Shard) -> Acceleration:
    """How the steps run on ``device`` as ``train.precision``, ``channels_last`` and
    ``compile`` ask (``auto``: bf16 + channels-last where the hardware computes in bf16)."""
    cfg = params.train
    return Acceleration.for_device(
        device,
        cfg.precision,
        cfg.channels_last,
        cfg.compile,
        images=augmented_input(params) is not None,
        data_parallel=shard.world_size > 1,
    )


# starting weights already read in this process (each tuning trial builds a fresh model)
_STARTS: dict[tuple[str, ...], tuple[Mapping[str, torch.Tensor] | None, WeightsReport | None]] = {}


def starting_backbone(params: Params, spec: ModelSpec) -> tuple[Backbone, WeightsReport | None]:
    """The backbone of ``spec`` with the weights ``model.backbone`` starts it from (the
    zoo's own, or a file's; a relative file is the project's); read once per process.
    Raises ``ConfigError`` naming the key."""
    cfg = params.model.backbone
    try:
        backbone = build_backbone(spec)
    except ValueError as exc:
        raise ConfigError(f"model.backbone: {exc}") from None
    try:
        shared = backbone.split_index(spec.shared_depth)
    except ValueError as exc:
        raise ConfigError(f"model.shared_depth: {exc}") from None
    total = len(backbone.block_names())
    problem = ARCHITECTURES.get(spec.architecture).split_problem(shared, total)
    if problem:
        raise ConfigError(
            f"model.architecture.name '{spec.architecture}' with model.shared_depth "
            f"{spec.shared_depth} ({shared} of the backbone's {total} blocks shared): {problem}"
        )
    if not cfg.pretrained and cfg.weights is None:
        return backbone, None
    file = None if cfg.weights is None else Path.cwd() / cfg.weights
    key = (
        spec.backbone,
        json.dumps(spec.backbone_args, sort_keys=True, default=str),
        str(cfg.pretrained),
        str(file),
        str(cfg.sha256),
    )
    if key not in _STARTS:
        try:
            report = load_initial_weights(
                backbone, spec.backbone, pretrained=cfg.pretrained, file=file, sha256=cfg.sha256
            )
        except WeightsError as exc:
            which = "pretrained" if cfg.pretrained else "weights"
            raise ConfigError(f"model.backbone.{which}: {exc}") from None
        _STARTS[key] = (backbone.initial_state, report)
        if report is not None:
            print(f"model.backbone: starts from {report.summary()}")
    backbone.initial_state, report = _STARTS[key]
    return backbone, report


def check_backbone(params: Params, input_specs: Sequence[InputSpec]) -> WeightsReport | None:
    """Before any long work (and any MLflow run): the device exists, the backbone builds,
    the split point is one of its blocks and the architecture can use it, and its starting
    weights are there and fit (``ConfigError`` naming the key otherwise)."""
    check_device(params)
    spec = model_spec(params, params.task_specs(), input_specs or [ImageInput("image")])
    backbone, report = starting_backbone(params, spec)
    check_architecture(spec, backbone)
    return report


def check_architecture(spec: ModelSpec, backbone: Backbone) -> None:
    """The architecture's own checks on its hyperparameters (``experts: 0``), made by
    building the model once, before any MLflow run; skipped for one without any (``hps``).
    ``ConfigError`` naming the key (``model.architecture.experts``)."""
    if not spec.architecture_args:
        return
    try:
        build_model(spec, backbone)
    except ValueError as exc:
        name, _, rest = str(exc).partition(" ")
        if name in spec.architecture_args:  # "experts must be >= 1, got 0"
            raise ConfigError(f"model.architecture.{name} {rest} ({spec.architecture})") from None
        raise ConfigError(f"model.architecture ({spec.architecture}): {exc}") from None


def _image_specs(inputs: ArraysByInput) -> list[InputSpec]:
    """Specs of image-only inputs, read off the arrays (callers without a split on disk)."""
    specs: list[InputSpec] = []
    for name, array in inputs.items():
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != array.shape[2]:
            raise ValueError(f"input '{name}' is not square uint8 images: pass input_specs")
        specs.append(ImageInput(name, array.shape[1], array.shape[3]))
    return specs


def affinity_note(params: Params) -> str | None:
    """Why ``train`` measures no task affinity (None: it does). A search over
    ``shared_depth`` may well sample 0, so an impossible measurement is skipped, not refused."""
    if not params.train.affinity.enabled:
        return "train.affinity.enabled is false"
    return affinity_unavailable(
        shares_blocks=params.model.shares_parameters(),
        joint_batches=params.train.schedule == "joint",
    )
