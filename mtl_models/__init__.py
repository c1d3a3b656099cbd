"""mtl_models: a small library for multi-task networks (no tracking or orchestration imports)."""

from mtl_models._registry import Registry, UnknownNameError
from mtl_models.inputs import INPUTS, InputSpec
from mtl_models.nn.backbones import BACKBONES, Backbone, ConvNet
from mtl_models.nn.heads import HEADS, Decoded, TaskHead
from mtl_models.nn.model import (
    ModelSpec,
    MultiTaskModel,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from mtl_models.tasks import PRIMARY_METRIC, TaskKind, TaskSpec
from mtl_models.train.trainer import Callback, EpochLog, FitResult, Trainer
from mtl_models.weighting import WEIGHTINGS, Weighting, build_weighting

__all__ = [
    "BACKBONES",
    "HEADS",
    "INPUTS",
    "PRIMARY_METRIC",
    "WEIGHTINGS",
    "Backbone",
    "Callback",
    "ConvNet",
    "Decoded",
    "EpochLog",
    "FitResult",
    "InputSpec",
    "ModelSpec",
    "MultiTaskModel",
    "Registry",
    "TaskHead",
    "TaskKind",
    "TaskSpec",
    "Trainer",
    "UnknownNameError",
    "Weighting",
    "build_model",
    "build_weighting",
    "load_checkpoint",
    "save_checkpoint",
]
