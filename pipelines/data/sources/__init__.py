"""Data sources: where ``prepare`` gets a dataset (``data.source``).

A source is a class registered in ``SOURCES`` under the name ``data.source`` takes. A
*generated* source writes its files into ``data/raw/`` (as the files a user would bring: a
manifest or table, images, ``.npy`` signals); the ``files`` source generates nothing and
``split`` reads the user's folder ``data.dir``. Adding a source is one module here plus its
import below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from mtl_models._registry import Registry

if TYPE_CHECKING:
    from pipelines.config import DataConfig, Params


class Source(ABC):
    """Fills the empty folder ``out`` (the new ``data/raw/``) for ``params``."""

    generated: ClassVar[bool] = True  # False: the data stays where the user keeps it

    @abstractmethod
    def write(self, params: Params, out: Path) -> int:
        """Write the dataset's files into ``out``; return the number of samples."""

    def image_size(self, data: DataConfig) -> int | None:
        """The size of the images it generates, when they are the input's natural size."""
        return None


SOURCES: Registry[Source] = Registry("data source")

# the registrations (each module registers its sources on import)
from pipelines.data.sources import (  # noqa: E402, F401
    digits,
    examples,
    files,
    flowers,
    synthetic_defects,
)

__all__ = ["SOURCES", "Source"]
