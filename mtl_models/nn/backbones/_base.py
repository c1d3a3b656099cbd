"""The backbone interface and its registry: a stack of blocks that the model splits into a
shared trunk and task branches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import nn

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
