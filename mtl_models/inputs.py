"""What a sample is made of: images, 1-D signals and table features, and their encodings.

An input spec says how raw values become the arrays the model reads. Specs that learn from
data (the feature scaler and one-hot categories, a signal's per-channel mean and spread) are
fitted on the training split only and saved with the model, so serving applies exactly the
training-time encoding to raw values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np


def cell_text(value: object) -> str | None:
    """A table cell as text, the same from CSV, Parquet and a served request: an integer
    stored as a float (a Parquet column with gaps) reads "1", not "1.0"; empty is None."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass(frozen=True)
class ImageInput:
    """Images read from files (or base64 when serving), resized to ``size`` x ``size``;
    stored as uint8 ``[N, size, size, channels]``."""

    kind: ClassVar[str] = "image"
    name: str
    size: int = 64
    channels: int = 1

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.size, self.size, self.channels)


@dataclass(frozen=True)
class SignalInput:
    """Fixed-length 1-D signals, one channel per source column: float ``[N, C, length]``,
    standardised per channel with the training split's mean and spread."""

    kind: ClassVar[str] = "signal"
    name: str
    channels: tuple[str, ...]
    length: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.channels), self.length)

    def fit(self, raw: np.ndarray) -> SignalInput:
        mean = raw.mean(axis=(0, 2))
        std = raw.std(axis=(0, 2))
        std = np.where(std > 0, std, 1.0)
        return replace(self, mean=tuple(map(float, mean)), std=tuple(map(float, std)))

    def encode(self, raw: np.ndarray) -> np.ndarray:
        if raw.ndim != 3 or raw.shape[1:] != self.shape:
            raise ValueError(f"input '{self.name}': expected [N, {self.shape}], got {raw.shape}")
        mean = np.asarray(self.mean or [0.0] * len(self.channels))[None, :, None]
        std = np.asarray(self.std or [1.0] * len(self.channels))[None, :, None]
        return ((raw - mean) / std).astype(np.float32)


@dataclass(frozen=True)
class FeatureInput:
    """Table columns: numeric ones standardised (a missing value becomes the training mean),
    categorical ones one-hot over the categories seen in training (a missing or unseen value
    is all zeros). Float ``[N, width]``."""

    kind: ClassVar[str] = "features"
    name: str
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    categories: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def fitted(self) -> bool:
        return len(self.mean) == len(self.numeric) and len(self.categories) == len(self.categorical)

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.width,)

    def fit(self, numeric: np.ndarray, categorical: np.ndarray) -> FeatureInput:
        """``numeric`` float ``[N, n]`` (NaN = missing), ``categorical`` object ``[N, c]``
        of cells (None or NaN = missing; compared as :func:`cell_text`)."""
        mean, std = [], []
        for j, column in enumerate(self.numeric):
            values = numeric[:, j][~np.isnan(numeric[:, j])]
            if len(values) == 0:
                raise ValueError(f"feature '{column}' has no values in the training split")
            mean.append(float(values.mean()))
            spread = float(values.std())
            std.append(spread if spread > 0 and math.isfinite(spread) else 1.0)
        categories = tuple(
            tuple(sorted({t for v in categorical[:, j] if (t := cell_text(v)) is not None}))
            for j in range(len(self.categorical))
        )
        return replace(self, mean=tuple(mean), std=tuple(std), categories=categories)

    def encode(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise ValueError(f"input '{self.name}': the encoding is not fitted")
        n = len(numeric) if len(self.numeric) else len(categorical)
        parts = []
        if self.numeric:
            scaled = (numeric - np.asarray(self.mean)) / np.asarray(self.std)
            parts.append(np.nan_to_num(scaled, nan=0.0))
        for j, cats in enumerate(self.categories):
            onehot = np.zeros((n, len(cats)))
            index = {c: k for k, c in enumerate(cats)}
            for row, value in enumerate(categorical[:, j]):
                k = index.get(cell_text(value))  # type: ignore[arg-type]
                if k is not None:
                    onehot[row, k] = 1.0
            parts.append(onehot)
        return np.concatenate(parts, axis=1).astype(np.float32)


InputSpec = ImageInput | SignalInput | FeatureInput
INPUT_KINDS: dict[str, type[InputSpec]] = {
    cls.kind: cls for cls in (ImageInput, SignalInput, FeatureInput)
}


def input_to_dict(spec: InputSpec) -> dict[str, Any]:
    return {"kind": spec.kind, **asdict(spec)}


def input_from_dict(data: Mapping[str, Any]) -> InputSpec:
    data = dict(data)
    cls = INPUT_KINDS[data.pop("kind")]
    for key in ("channels", "numeric", "categorical", "mean", "std"):
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    if "categories" in data:
        data["categories"] = tuple(tuple(c) for c in data["categories"])
    return cls(**data)
