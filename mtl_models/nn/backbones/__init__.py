"""Backbones by name (``BACKBONES``): one module per family; importing it here registers it.
A new backbone is a ``Backbone`` subclass in its own module, registered with
``@BACKBONES.register("<name>")``, plus its import below."""

from mtl_models.nn.backbones._base import BACKBONES, Backbone
from mtl_models.nn.backbones.conv import ConvNet, ConvNet1d
from mtl_models.nn.backbones.fusion import Fusion
from mtl_models.nn.backbones.mlp import MLP

__all__ = ["BACKBONES", "MLP", "Backbone", "ConvNet", "ConvNet1d", "Fusion"]
