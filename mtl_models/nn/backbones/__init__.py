"""Backbones by name (``BACKBONES``): one module per family; importing it here registers it.
A new backbone is a ``Backbone`` subclass in its own module, registered with
``@BACKBONES.register("<name>")``, plus its import below. ``timm/<name>`` and
``torchvision/<name>`` are families: torchvision and timm are imported only when one is built."""

from mtl_models.nn.backbones._base import BACKBONES, Backbone
from mtl_models.nn.backbones.conv import ConvNet, ConvNet1d
from mtl_models.nn.backbones.fusion import Fusion
from mtl_models.nn.backbones.mlp import MLP
from mtl_models.nn.backbones.zoo import ZooBackbone
from mtl_models.nn.backbones.zoo_timm import TimmBackbone
from mtl_models.nn.backbones.zoo_torchvision import TorchvisionBackbone

__all__ = [
    "BACKBONES",
    "MLP",
    "Backbone",
    "ConvNet",
    "ConvNet1d",
    "Fusion",
    "TimmBackbone",
    "TorchvisionBackbone",
    "ZooBackbone",
]
