"""The backbone interface and its registry: a stack of blocks that the model splits into a
shared trunk and task branches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from mtl_models._registry import Registry


class Backbone(ABC):
    """Builds a fresh stack of blocks; the model decides which ones are shared.

    Blocks have names (``block_names``) that prefix their parameters in the backbone's own
    state-dict naming: the naming of a weights file it loads (``initial_state``) or exports.
    """

    depth: int  # the stages a split index counts (``split_index``)
    # The input kinds it reads (besides any kind that names it as its default backbone).
    reads: ClassVar[frozenset[str]] = frozenset()
    # Weights every new list of blocks starts from, in the backbone's naming (None: fresh).
    initial_state: Mapping[str, Tensor] | None = None

    @classmethod
    def can_read(cls, name: str, kind: str, default_backbone: str) -> bool:
        """Whether the backbone registered as ``name`` reads an input of ``kind`` (whose
        default backbone is ``default_backbone``)."""
        return kind in cls.reads or name == default_backbone

    @classmethod
    def create(cls, name: str, **kwargs: Any) -> Backbone:
        """The backbone registered as ``name`` (a family adds the model from the name)."""
        return cls(**kwargs)

    @classmethod
    def recorded_args(cls, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments a model spec records: ``args`` plus anything resolved from the
        library at training time that serving must apply the same way (normalisation)."""
        return dict(args)

    @abstractmethod
    def build_blocks(self) -> list[nn.Module]:
        """A new, independently initialised list of blocks."""

    def blocks(self) -> list[nn.Module]:
        """A new list of blocks, starting from ``initial_state`` when there is one."""
        blocks = self.build_blocks()
        if self.initial_state is not None:
            for name, block in zip(self.block_names(), blocks, strict=True):
                prefix = f"{name}."
                own = {
                    key[len(prefix) :]: value
                    for key, value in self.initial_state.items()
                    if key.startswith(prefix)
                }
                if own:
                    block.load_state_dict(own, strict=False)
        return blocks

    def block_names(self) -> list[str]:
        """One name per block, in order (``0``, ``1``, ... unless a family names them)."""
        return [str(i) for i in range(self.depth)]

    def split_index(self, split: int | str | None) -> int:
        """How many leading blocks are shared for a split point: ``None`` = all, an int
        counts stages, a string names the block where the task branches begin."""
        names = self.block_names()
        if split is None:
            return len(names)
        if isinstance(split, int):
            if not 0 <= split <= self.depth:
                raise ValueError(f"shared_depth must be in 0..{self.depth}, got {split}")
            return split
        for index, name in enumerate(names):
            if name == split or name.startswith(f"{split}."):
                return index
        shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
        raise ValueError(f"'{split}' is not a block of {self!r}; split points: {shown}")

    @abstractmethod
    def build_pool(self) -> nn.Module:
        """Maps the last block's output to a flat feature vector of ``out_features``."""

    @property
    @abstractmethod
    def out_features(self) -> int: ...


BACKBONES: Registry[Backbone] = Registry("backbone")
