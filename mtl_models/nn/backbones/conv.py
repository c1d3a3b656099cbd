"""Convolutional backbones: ``cnn`` over images and ``cnn1d`` over signals."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from mtl_models.nn.backbones._base import BACKBONES, Backbone


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
