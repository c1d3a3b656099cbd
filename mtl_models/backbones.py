"""Backbones: stacks of blocks that the model splits into a shared trunk and task branches."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from mtl_models._registry import Registry


class Backbone(ABC):
    """Builds a fresh stack of ``depth`` blocks; the model decides which ones are shared."""

    depth: int

    @abstractmethod
    def build_blocks(self) -> list[nn.Module]:
        """A new, independently initialised list of ``depth`` blocks."""

    @abstractmethod
    def build_pool(self) -> nn.Module:
        """Maps the last block's output to a flat feature vector of ``out_features``."""

    @property
    @abstractmethod
    def out_features(self) -> int: ...


BACKBONES: Registry[Backbone] = Registry("backbone")


@BACKBONES.register("cnn")
class ConvNet(Backbone):
    """Conv-BN-ReLU-MaxPool blocks; channels double per block up to ``4 * width``.

    The final pooling keeps a coarse ``pool_size x pool_size`` grid rather than a global
    average, because region-specific tasks (left/centre/right) need to know *where* a
    feature is.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, depth: int = 4, pool_size: int = 4):
        if depth < 1 or width < 1 or in_channels < 1 or pool_size < 1:
            raise ValueError("in_channels, width, depth and pool_size must be positive")
        self.in_channels = in_channels
        self.width = width
        self.depth = depth
        self.pool_size = pool_size

    def _channels(self, block: int) -> int:
        return self.width * 2 ** min(block, 2)

    def build_blocks(self) -> list[nn.Module]:
        blocks: list[nn.Module] = []
        in_ch = self.in_channels
        for i in range(self.depth):
            out_ch = self._channels(i)
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(out_ch),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            in_ch = out_ch
        return blocks

    def build_pool(self) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(self.pool_size), nn.Flatten())

    @property
    def out_features(self) -> int:
        return self._channels(self.depth - 1) * self.pool_size**2

    def __repr__(self) -> str:
        return (
            f"ConvNet(in_channels={self.in_channels}, width={self.width}, depth={self.depth}, "
            f"pool_size={self.pool_size})"
        )


@BACKBONES.register("mlp")
class MLP(Backbone):
    """Linear-ReLU blocks of ``4 * width`` units, for table features ``[B, in_features]``."""

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


@BACKBONES.register("cnn1d")
class ConvNet1d(Backbone):
    """Conv1d-BN-ReLU-MaxPool blocks over signals ``[B, C, L]``; channels double per block up
    to ``4 * width``, then a coarse ``pool_size`` grid, so where in the signal a feature sits
    still counts."""

    def __init__(self, in_channels: int = 1, width: int = 32, depth: int = 3, pool_size: int = 8):
        if depth < 1 or width < 1 or in_channels < 1 or pool_size < 1:
            raise ValueError("in_channels, width, depth and pool_size must be positive")
        self.in_channels = in_channels
        self.width = width
        self.depth = depth
        self.pool_size = pool_size

    def _channels(self, block: int) -> int:
        return self.width * 2 ** min(block, 2)

    def build_blocks(self) -> list[nn.Module]:
        blocks: list[nn.Module] = []
        in_ch = self.in_channels
        for i in range(self.depth):
            out_ch = self._channels(i)
            blocks.append(
                nn.Sequential(
                    nn.Conv1d(in_ch, out_ch, kernel_size=5, padding=2, bias=False),
                    nn.BatchNorm1d(out_ch),
                    nn.ReLU(inplace=True),
                    nn.MaxPool1d(2),
                )
            )
            in_ch = out_ch
        return blocks

    def build_pool(self) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool1d(self.pool_size), nn.Flatten())

    @property
    def out_features(self) -> int:
        return self._channels(self.depth - 1) * self.pool_size

    def __repr__(self) -> str:
        return (
            f"ConvNet1d(in_channels={self.in_channels}, width={self.width}, depth={self.depth}, "
            f"pool_size={self.pool_size})"
        )


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
