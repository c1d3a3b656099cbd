"""Task kinds: one module per kind, each registered in ``KINDS`` (importing them registers
them). A new kind subclasses :class:`Kind` and registers itself; nothing else changes."""

from mtl_models.kinds._base import (
    COLLAPSE_SHARE,
    COLLAPSE_STD_RATIO,
    KINDS,
    Decoded,
    Kind,
    article,
    get_kind,
)
from mtl_models.kinds._discrete import DiscreteKind
from mtl_models.kinds.binary import Binary
from mtl_models.kinds.classification import Classification
from mtl_models.kinds.ordinal import Ordinal
from mtl_models.kinds.regression import Regression

__all__ = [
    "COLLAPSE_SHARE",
    "COLLAPSE_STD_RATIO",
    "KINDS",
    "Binary",
    "Classification",
    "Decoded",
    "DiscreteKind",
    "Kind",
    "Ordinal",
    "Regression",
    "article",
    "get_kind",
]
