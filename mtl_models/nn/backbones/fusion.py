"""``fusion``: several inputs per sample, one encoder each, concatenated."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_models.nn.backbones._base import BACKBONES, Backbone


class _Encoder(nn.Module):
    """A whole single-input backbone (all blocks and the pool) as one module."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.net = nn.Sequential(*backbone.build_blocks(), backbone.build_pool())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _Fuse(nn.Module):
    """One encoder per input, their features concatenated and projected to ``units``."""

    def __init__(self, encoders: dict[str, Backbone], units: int):
        super().__init__()
        self.encoders = nn.ModuleDict({name: _Encoder(b) for name, b in encoders.items()})
        total = sum(b.out_features for b in encoders.values())
        self.project = nn.Sequential(nn.Linear(total, units), nn.ReLU(inplace=True))

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        features = [encoder(inputs[name]) for name, encoder in self.encoders.items()]
        return self.project(torch.cat(features, dim=1))


@BACKBONES.register("fusion")
class Fusion(Backbone):
    """Several inputs per sample: a CNN per image input, a 1-D CNN per signal, an MLP per
    feature table, concatenated; then ``depth - 1`` shared MLP blocks.

    Block 0 is the whole fusion (all encoders), so ``shared_depth`` counts it like any other
    block: ``shared_depth: 0`` gives each task its own encoders.
    """

    def __init__(self, inputs: dict[str, Backbone], width: int = 32, depth: int = 2):
        if not inputs:
            raise ValueError("fusion needs at least one input encoder")
        if depth < 1 or width < 1:
            raise ValueError("width and depth must be positive")
        self.inputs = inputs
        self.width = width
        self.depth = depth

    def build_blocks(self) -> list[nn.Module]:
        units = 4 * self.width
        rest = [
            nn.Sequential(nn.Linear(units, units), nn.ReLU(inplace=True))
            for _ in range(self.depth - 1)
        ]
        return [_Fuse(self.inputs, units), *rest]

    def build_pool(self) -> nn.Module:
        return nn.Identity()

    @property
    def out_features(self) -> int:
        return 4 * self.width

    def __repr__(self) -> str:
        return f"Fusion(inputs={self.inputs!r}, width={self.width}, depth={self.depth})"
