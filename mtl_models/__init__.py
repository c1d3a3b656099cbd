"""mtl_models: a small library for multi-task networks (no tracking or orchestration imports).

The public names below load on first use (PEP 562), so importing one part of the library (a
registry, for configuration) does not load the rest (the trainer, the weighting methods).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that holds it
_HOMES = {
    "BACKBONES": "mtl_models.nn.backbones",
    "Backbone": "mtl_models.nn.backbones",
    "Callback": "mtl_models.train.trainer",
    "ConvNet": "mtl_models.nn.backbones",
    "Decoded": "mtl_models.nn.heads",
    "EpochLog": "mtl_models.train.trainer",
    "FitResult": "mtl_models.train.trainer",
    "INPUTS": "mtl_models.inputs",
    "InputSpec": "mtl_models.inputs",
    "KINDS": "mtl_models.kinds",
    "Kind": "mtl_models.kinds",
    "ModelSpec": "mtl_models.nn.model",
    "MultiTaskModel": "mtl_models.nn.model",
    "Registry": "mtl_models._registry",
    "TaskHead": "mtl_models.nn.heads",
    "TaskSpec": "mtl_models.tasks",
    "Trainer": "mtl_models.train.trainer",
    "UnknownNameError": "mtl_models._registry",
    "WEIGHTINGS": "mtl_models.weighting",
    "WeightingMethod": "mtl_models.weighting",
    "build_model": "mtl_models.nn.model",
    "build_weighting": "mtl_models.weighting",
    "fit_task": "mtl_models.tasks",
    "get_kind": "mtl_models.kinds",
    "load_checkpoint": "mtl_models.nn.checkpoint",
    "save_checkpoint": "mtl_models.nn.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
