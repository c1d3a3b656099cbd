"""Backbones: stacks of blocks that the model splits into a shared trunk and task branches."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

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
