"""How the tasks share the backbone (``ARCHITECTURES``): one module per architecture, each
citing its paper; importing it here registers it. A new architecture is a
``MultiTaskModel`` subclass registered with ``@register("<name>")``, whose typed keyword
arguments after ``example`` are its configurable hyperparameters."""

from mtl_models.nn.architectures._base import (
    ARCHITECTURES,
    Features,
    Inputs,
    MultiTaskModel,
    register,
    task_key,
)
from mtl_models.nn.architectures.cross_stitch import CrossStitchNetwork
from mtl_models.nn.architectures.dselect_k import DSelectK
from mtl_models.nn.architectures.hps import HardSharing
from mtl_models.nn.architectures.mmoe import MMoE
from mtl_models.nn.architectures.mtan import MTAN
from mtl_models.nn.architectures.ple import CGC, PLE

__all__ = [
    "ARCHITECTURES",
    "CGC",
    "MTAN",
    "PLE",
    "CrossStitchNetwork",
    "DSelectK",
    "Features",
    "HardSharing",
    "Inputs",
    "MMoE",
    "MultiTaskModel",
    "register",
    "task_key",
]
