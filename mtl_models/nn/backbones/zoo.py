"""Image networks from a model zoo (``timm/<name>``, ``torchvision/<name>``) as backbones.

A zoo network becomes a list of blocks by opening every container that runs its children in
order (``nn.Sequential`` and the zoo's own feature wrappers), so any module on that path can
be the split point: ``shared_depth: features.11`` shares everything before SqueezeNet 1.1's
fire8 and gives each task its own fire8, fire9 and head. An int split counts the network's
stages (``stage_names``). Block 0 turns raw ``[0, 1]`` images into what the weights expect:
one channel repeated to three, an optional resize, the weights' mean and std.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_models.nn.backbones._base import Backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(nn.Module):
    """``[B, C, H, W]`` images in [0, 1] -> normalised 3-channel input at ``size``."""

    def __init__(
        self, in_channels: int, mean: Sequence[float], std: Sequence[float], size: int | None
    ):
        super().__init__()
        self.in_channels = in_channels
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)  # = the RGB stem with its filters summed
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def runs_in_order(module: nn.Module) -> bool:
    """A plain ``nn.Sequential``: its forward feeds each child's output to the next."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def open_containers(
    children: Sequence[tuple[str, nn.Module]], prefix: str = ""
) -> list[tuple[str, nn.Module]]:
    """``children`` with every in-order container opened, recursively, named by path."""
    blocks: list[tuple[str, nn.Module]] = []
    for name, child in children:
        path = f"{prefix}{name}"
        if runs_in_order(child) and len(child) > 0:
            blocks += open_containers(list(child.named_children()), f"{path}.")
        else:
            blocks.append((path, child))
    return blocks


class ZooBackbone(Backbone):
    """A zoo network by name, split anywhere along its in-order layers (see module doc)."""

    family: ClassVar[str]
    reads = frozenset({"image"})
    _verified: ClassVar[set[tuple[str, str]]] = set()

    def __init__(
        self,
        model: str,
        in_channels: int = 3,
        input_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        if in_channels not in (1, 3):
            raise ValueError(
                f"{self.family}/{model} reads 1- or 3-channel images, not {in_channels}"
            )
        if input_size is not None and input_size < 16:
            raise ValueError(f"input_size must be at least 16 pixels, got {input_size}")
        self.model = model
        self.in_channels = in_channels
        self.input_size = input_size
        if mean is None or std is None:
            mean, std = self.library_normalization(model)
        self.mean, self.std = tuple(mean), tuple(std)
        net = self.network(model)
        net.eval()
        self._layers = open_containers(self.top_level(net))
        self._stage_ends = self._find_stage_ends(self.stage_names(net))
        self._out_features = self._verify(net)

    # -- what a family provides -------------------------------------------------------------

    @classmethod
    @abstractmethod
    def network(cls, model: str) -> nn.Module:
        """The architecture, randomly initialised, with 3 input channels."""

    @classmethod
    @abstractmethod
    def top_level(cls, net: nn.Module) -> list[tuple[str, nn.Module]]:
        """The network's layers that run in order up to its last feature map."""

    @classmethod
    @abstractmethod
    def stage_names(cls, net: nn.Module) -> list[str]:
        """The module ending each stage (what an int split counts)."""

    @classmethod
    @abstractmethod
    def reference_output(cls, net: nn.Module, x: Tensor) -> Tensor | None:
        """The network's own last feature map for ``x`` (to check the blocks against),
        or None when it cannot be compared."""

    @classmethod
    @abstractmethod
    def library_normalization(cls, model: str) -> tuple[Sequence[float], Sequence[float]]:
        """Mean and std of the library's pretrained weights for ``model``."""

    @classmethod
    @abstractmethod
    def library_weights(cls, model: str) -> dict[str, Tensor]:
        """The library's pretrained weights in block naming, through its own cache; raises
        ``WeightsError`` naming the cache path when they are absent and cannot be fetched."""

    @classmethod
    def file_weights(cls, model: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A library-format weights file's state in block naming (default: as it is)."""
        return dict(state)

    # -- the Backbone interface ---------------------------------------------------------------

    @classmethod
    def create(cls, name: str, **kwargs: Any) -> Backbone:
        return cls(name.partition("/")[2], **kwargs)

    @classmethod
    def recorded_args(cls, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        recorded = dict(args)
        if recorded.get("mean") is None or recorded.get("std") is None:
            mean, std = cls.library_normalization(name.partition("/")[2])
            recorded["mean"], recorded["std"] = list(mean), list(std)
        return recorded

    @property
    def depth(self) -> int:  # type: ignore[override]
        return len(self._stage_ends)

    def block_names(self) -> list[str]:
        return ["preprocess", *(name for name, _ in self._layers)]

    def build_blocks(self) -> list[nn.Module]:
        preprocess = Preprocess(self.in_channels, self.mean, self.std, self.input_size)
        return [preprocess, *(copy.deepcopy(layer) for _, layer in self._layers)]

    def split_index(self, split: int | str | None) -> int:
        if isinstance(split, int) and 0 <= split <= self.depth:
            return 0 if split == 0 else self._stage_ends[split - 1]
        return super().split_index(split)

    def build_pool(self) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    @property
    def out_features(self) -> int:
        return self._out_features

    def __repr__(self) -> str:
        return f"{self.family}/{self.model}(in_channels={self.in_channels})"

    # -- internals ----------------------------------------------------------------------------

    def _find_stage_ends(self, stages: list[str]) -> list[int]:
        """Block count after each stage (block 0 is the preprocessing)."""
        names = [name for name, _ in self._layers]
        ends = []
        for stage in stages:
            inside = [i for i, n in enumerate(names) if n == stage or n.startswith(f"{stage}.")]
            if inside:
                ends.append(inside[-1] + 2)
        return sorted(set(ends))

    @torch.no_grad()
    def _verify(self, net: nn.Module) -> int:
        """Run the blocks once; where the network can say, check they compute what it does
        (a network whose forward does more than run these layers in order is refused)."""
        size = max(self.input_size or 0, 96)
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        key = (self.family, self.model)
        try:
            reference = None if key in self._verified else self.reference_output(net, x.clone())
            out = x
            for _, layer in self._layers:
                out = layer(out)
        except Exception as exc:  # e.g. a transformer that needs its own input size
            raise ValueError(
                f"{self.family}/{self.model} cannot run as a backbone on {size}x{size} images "
                f"({type(exc).__name__}: {str(exc)[:120]}); choose a convolutional network"
            ) from None
        if out.dim() != 4:
            raise ValueError(
                f"{self.family}/{self.model} does not end in a feature map (got shape "
                f"{tuple(out.shape)}); choose a convolutional network"
            )
        if key not in self._verified:
            if reference is not None and (
                reference.numel() != out.numel()
                or not torch.allclose(reference.flatten(), out.flatten(), atol=1e-4, rtol=1e-3)
            ):
                raise ValueError(
                    f"{self.family}/{self.model} does more in its forward than run its layers "
                    "in order, so it cannot be split here; try the timm version of it"
                )
            self._verified.add(key)
        return int(out.shape[1])
