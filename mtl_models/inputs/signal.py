"""Signal inputs: fixed-length 1-D signals, one channel per source column or folder, float
``[N, C, length]`` standardised per channel with the training split's mean and spread."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from mtl_models.inputs._base import (
    INPUTS,
    ColumnRef,
    InputConfig,
    InputError,
    InputSpec,
    InvalidRequest,
    Raw,
    ReadContext,
    TableSource,
    gather,
    inside,
    listing,
    refuse_duplicates,
    regular_file,
    request_columns,
)


class SignalInputConfig(InputConfig):
    """Fixed-length 1-D signals, one channel each: a column of ``.npy`` paths (relative to
    ``root``) or of arrays (Parquet), or a folder of ``.npy`` files whose i-th name in sorted
    order is row i."""

    kind: Literal["signal"]
    columns: list[ColumnRef] = Field(default_factory=list)
    folders: list[str] = Field(default_factory=list)
    root: str = "."

    @model_validator(mode="after")
    def _one_layout(self) -> SignalInputConfig:
        if bool(self.columns) == bool(self.folders):
            raise ValueError("give a signal's channels as either columns or folders")
        return self


def _channel(
    table: TableSource, name: str, config: SignalInputConfig, c: int, context: ReadContext
) -> list[np.ndarray]:
    root = context.root / config.root
    if config.columns:
        column = table.column(config.columns[c], f"data.inputs.{name}.columns[{c}]")
        cells = table.cells(column)
        if any(isinstance(v, list | tuple | np.ndarray) for v in cells):  # a Parquet array column
            return gather(table, cells, column, lambda v: np.asarray(v, dtype=float), files=False)
        refuse_duplicates(table, cells, column)
        return gather(table, cells, column, lambda p: _read(inside(root, p)))
    folder = root / config.folders[c]
    files = sorted(folder.glob("*.npy")) if folder.is_dir() else []
    if len(files) != len(table):
        raise InputError(
            f"{folder}: {len(files)} .npy files but {table.source} has {len(table)} rows "
            f"(data.inputs.{name}.folders[{c}]: the i-th file in name order is row i)"
        )
    return gather(table, [str(f) for f in files], str(folder), _read)


def _read(path: Path) -> np.ndarray:
    return np.load(regular_file(path)).astype(float)


@INPUTS.register("signal")
@dataclass(frozen=True)
class SignalInput(InputSpec):
    """Fixed-length 1-D signals, one channel per source column: float ``[N, C, length]``,
    standardised per channel with the training split's mean and spread. A request holds
    each channel's signal as a list of numbers in the channel's column."""

    kind = "signal"
    Config = SignalInputConfig
    backbone = "cnn1d"
    fusion_depth = 3

    channels: tuple[str, ...]
    length: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.channels), self.length)

    @classmethod
    def read(
        cls, name: str, config: SignalInputConfig, table: TableSource, context: ReadContext
    ) -> tuple[SignalInput, Raw]:
        """Every signal finite, 1-D and of the length most rows have (the rows that differ
        are listed)."""
        n_channels = len(config.columns or config.folders)
        channels = [_channel(table, name, config, c, context) for c in range(n_channels)]
        shapes = [s.shape for signals in channels for s in signals]
        length = max(set(shapes), key=shapes.count)
        problems = [
            f"{table.row(row)}, input '{name}' channel {c}: shape {signal.shape}"
            + ("" if np.isfinite(signal).all() else ", not finite")
            for c, signals in enumerate(channels)
            for row, signal in enumerate(signals)
            if signal.shape != length or len(length) != 1 or not np.isfinite(signal).all()
        ]
        if problems:
            raise InputError(
                f"{table.source}: {len(problems)} signals are not finite 1-D arrays of "
                f"{length[0] if len(length) == 1 else length} samples (as most rows are)\n  "
                + listing(problems)
            )
        signals = np.stack([np.stack(s) for s in channels], axis=1)
        names = tuple(str(c) for c in (config.columns or config.folders))
        return cls(name, names, signals.shape[2]), (signals,)

    def fit(self, *raw: np.ndarray) -> SignalInput:
        mean = raw[0].mean(axis=(0, 2))
        std = raw[0].std(axis=(0, 2))
        std = np.where(std > 0, std, 1.0)
        return replace(self, mean=tuple(map(float, mean)), std=tuple(map(float, std)))

    def _mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(self.mean or [0.0] * len(self.channels))[None, :, None]
        std = np.asarray(self.std or [1.0] * len(self.channels))[None, :, None]
        return mean, std

    def encode(self, *raw: np.ndarray) -> np.ndarray:
        signals = raw[0]
        if signals.ndim != 3 or signals.shape[1:] != self.shape:
            raise ValueError(
                f"input '{self.name}': expected [N, {self.shape}], got {signals.shape}"
            )
        mean, std = self._mean_std()
        return ((signals - mean) / std).astype(np.float32)

    def decode_request(self, frame: pd.DataFrame) -> Raw:
        request_columns(frame, list(self.channels), f"signal '{self.name}'")
        out = np.empty((len(frame), *self.shape))
        for c, column in enumerate(self.channels):
            for row, value in enumerate(frame[column]):
                signal = np.asarray(value, dtype=float) if value is not None else np.empty(0)
                if signal.shape != (self.length,) or not np.isfinite(signal).all():
                    raise InvalidRequest(
                        f"row {row}: '{column}' must be a list of {self.length} finite numbers"
                    )
                out[row, c] = signal
        return (out,)

    def to_request(self, encoded: np.ndarray, rows: pd.DataFrame) -> dict[str, list[Any]]:
        mean, std = self._mean_std()
        raw = encoded * std + mean
        return {
            column: [row.tolist() for row in raw[:, c]] for c, column in enumerate(self.channels)
        }

    def backbone_args(self) -> dict[str, int]:
        return {"in_channels": len(self.channels)}
