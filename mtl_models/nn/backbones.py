"""Backbones: stacks of blocks that the model splits into a shared trunk and task branches."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from mtl_models._registry import Registry


class Backbone(ABC):
    """Builds a fresh stack of ``depth`` blocks; the model decides which ones are shared."""

    depth: int
    # The input kinds it reads (besides any kind that names it as its default backbone).
    reads: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def can_read(cls, name: str, kind: str, default_backbone: str) -> bool:
        """Whether the backbone registered as ``name`` reads an input of ``kind`` (whose
        default backbone is ``default_backbone``)."""
        return kind in cls.reads or name == default_backbone

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


class _ConvStack(Backbone):
    """Conv-BN-ReLU-MaxPool blocks; channels double per block up to ``4 * width``; the final
    pooling keeps a coarse grid of ``pool_size`` cells per axis rather than a global average,
    because region-specific tasks (left/centre/right, early/late in a signal) need to know
    *where* a feature is. Subclasses pick the dimensionality."""

    conv: ClassVar[type[nn.Module]]
    norm: ClassVar[type[nn.Module]]
    max_pool: ClassVar[type[nn.Module]]
    grid_pool: ClassVar[type[nn.Module]]
    kernel_size: ClassVar[int]
    dims: ClassVar[int]

    def __init__(self, in_channels: int, width: int, depth: int, pool_size: int):
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
            conv = self.conv(
                in_ch, out_ch, self.kernel_size, padding=self.kernel_size // 2, bias=False
            )
            blocks.append(
                nn.Sequential(conv, self.norm(out_ch), nn.ReLU(inplace=True), self.max_pool(2))
            )
            in_ch = out_ch
        return blocks

    def build_pool(self) -> nn.Module:
        return nn.Sequential(self.grid_pool(self.pool_size), nn.Flatten())

    @property
    def out_features(self) -> int:
        return self._channels(self.depth - 1) * self.pool_size**self.dims

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(in_channels={self.in_channels}, width={self.width}, "
            f"depth={self.depth}, pool_size={self.pool_size})"
        )


@BACKBONES.register("cnn")
class ConvNet(_ConvStack):
    """A 2-D CNN over images ``[B, C, H, W]``."""

    conv, norm, max_pool, grid_pool = nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d
    kernel_size, dims = 3, 2
    reads = frozenset({"image"})

    def __init__(self, in_channels: int = 1, width: int = 32, depth: int = 4, pool_size: int = 4):
        super().__init__(in_channels, width, depth, pool_size)


@BACKBONES.register("cnn1d")
class ConvNet1d(_ConvStack):
    """A 1-D CNN over signals ``[B, C, L]``."""

    conv, norm, max_pool, grid_pool = nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d
    kernel_size, dims = 5, 1
    reads = frozenset({"signal"})

    def __init__(self, in_channels: int = 1, width: int = 32, depth: int = 3, pool_size: int = 8):
        super().__init__(in_channels, width, depth, pool_size)


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
