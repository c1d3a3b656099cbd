"""``mlp``: Linear-ReLU blocks over table features."""

from __future__ import annotations

import itertools

from torch import nn

from mtl_models.nn.backbones._base import BACKBONES, Backbone


@BACKBONES.register("mlp")
class MLP(Backbone):
    """Linear-ReLU blocks of ``4 * width`` units, for table features ``[B, in_features]``."""

    reads = frozenset({"features"})

    def __init__(self, in_features: int, width: int = 32, depth: int = 2):
        if depth < 1 or width < 1 or in_features < 1:
            raise ValueError("in_features, width and depth must be positive")
        self.in_features = in_features
        self.width = width
        self.depth = depth

    def build_blocks(self) -> list[nn.Module]:
        units = 4 * self.width
        sizes = [self.in_features] + [units] * self.depth
        return [
            nn.Sequential(nn.Linear(a, b), nn.ReLU(inplace=True))
            for a, b in itertools.pairwise(sizes)
        ]

    def build_pool(self) -> nn.Module:
        return nn.Identity()

    @property
    def out_features(self) -> int:
        return 4 * self.width

    def __repr__(self) -> str:
        return f"MLP(in_features={self.in_features}, width={self.width}, depth={self.depth})"
