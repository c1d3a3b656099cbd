"""mtl_models: a small library for multi-task networks (no tracking or orchestration imports)."""

from mtl_models._registry import Registry, UnknownNameError
from mtl_models.inputs import INPUTS, InputSpec
from mtl_models.kinds import KINDS, Kind, get_kind
from mtl_models.nn.backbones import BACKBONES, Backbone, ConvNet
from mtl_models.nn.checkpoint import load_checkpoint, save_checkpoint
from mtl_models.nn.heads import Decoded, TaskHead
from mtl_models.nn.model import ModelSpec, MultiTaskModel, build_model
from mtl_models.tasks import TaskSpec, fit_task
from mtl_models.train.trainer import Callback, EpochLog, FitResult, Trainer
from mtl_models.weighting import WEIGHTINGS, WeightingMethod, build_weighting

__all__ = [
    "BACKBONES",
    "INPUTS",
    "KINDS",
    "WEIGHTINGS",
    "Backbone",
    "Callback",
    "ConvNet",
    "Decoded",
    "EpochLog",
    "FitResult",
    "InputSpec",
    "Kind",
    "ModelSpec",
    "MultiTaskModel",
    "Registry",
    "TaskHead",
    "TaskSpec",
    "Trainer",
    "UnknownNameError",
    "WeightingMethod",
    "build_model",
    "build_weighting",
    "fit_task",
    "get_kind",
    "load_checkpoint",
    "save_checkpoint",
]
