"""Feature inputs: table columns, numeric ones standardised and categorical ones one-hot
encoded, both fitted on the training split. A request holds the same columns, raw."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    cell_text,
    listing,
    request_columns,
)


class FeaturesInputConfig(InputConfig):
    """Table columns: numeric ones standardised, categorical ones one-hot encoded (both
    fitted on the training split, stored with the model, applied when serving)."""

    kind: Literal["features"]
    numeric: list[ColumnRef] = Field(default_factory=list)
    categorical: list[ColumnRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_columns(self) -> FeaturesInputConfig:
        if not self.numeric and not self.categorical:
            raise ValueError("a features input needs numeric and/or categorical columns")
        return self


def parse_numbers(cells: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Cells (text or numbers; None/NaN = empty) -> float values (NaN = empty) and the
    indices of the cells that are neither empty nor a finite number: the one parsing that
    training data and served requests share."""
    series = pd.Series(list(cells), dtype=object)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero((np.isnan(values) & series.notna().to_numpy()) | np.isinf(values))
    return values, bad


def _categories(cells: Sequence[Any]) -> list[str | None]:
    return [cell_text(v) for v in cells]


@INPUTS.register("features")
@dataclass(frozen=True)
class FeatureInput(InputSpec):
    """Table columns: numeric ones standardised (a missing value becomes the training mean),
    categorical ones one-hot over the categories seen in training (a missing or unseen value
    is all zeros). Float ``[N, width]``."""

    kind = "features"
    Config = FeaturesInputConfig
    backbone = "mlp"
    fusion_depth = 1
    tabular = True

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

    @classmethod
    def read(
        cls, name: str, config: FeaturesInputConfig, table: TableSource, context: ReadContext
    ) -> tuple[FeatureInput, Raw]:
        """Numeric columns as float ``[N, n]`` (NaN = missing; anything else not a number is
        an error naming it), categorical ones as strings ``[N, c]`` (None = missing)."""
        key = f"data.inputs.{name}"
        numeric_cols = [table.column(r, f"{key}.numeric") for r in config.numeric]
        categorical_cols = [table.column(r, f"{key}.categorical") for r in config.categorical]
        numeric = np.empty((len(table), len(numeric_cols)))
        problems = []
        for j, column in enumerate(numeric_cols):
            cells = table.cells(column)
            numeric[:, j], bad = parse_numbers(cells)
            problems += [
                f"{table.row(row)}, column '{column}': got {cells[row]!r}, expected a number "
                f"or empty ({key}.numeric)"
                for row in bad
            ]
        if problems:
            raise InputError(f"{table.source}: non-numeric features\n  " + listing(problems))
        categorical = np.empty((len(table), len(categorical_cols)), dtype=object)
        for j, column in enumerate(categorical_cols):
            categorical[:, j] = _categories(table.cells(column))
        spec = cls(name, tuple(numeric_cols), tuple(categorical_cols))
        return spec, (numeric, categorical)

    def fit(self, *raw: np.ndarray) -> FeatureInput:
        """``numeric`` float ``[N, n]`` (NaN = missing), ``categorical`` object ``[N, c]``
        of cells (None or NaN = missing; compared as :func:`cell_text`)."""
        numeric, categorical = raw
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

    def encode(self, *raw: np.ndarray) -> np.ndarray:
        numeric, categorical = raw
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

    def decode_request(self, frame: pd.DataFrame) -> Raw:
        request_columns(frame, [*self.numeric, *self.categorical], "feature")
        numeric = np.empty((len(frame), len(self.numeric)))
        for j, column in enumerate(self.numeric):
            cells = list(frame[column])
            numeric[:, j], bad = parse_numbers(cells)
            if len(bad):
                raise InvalidRequest(
                    f"row {bad[0]}: '{column}' wants a number or null, not {cells[bad[0]]!r}"
                )
        categorical = np.empty((len(frame), len(self.categorical)), dtype=object)
        for j, column in enumerate(self.categorical):
            categorical[:, j] = _categories(frame[column])
        return numeric, categorical

    def to_request(self, encoded: np.ndarray, rows: pd.DataFrame) -> dict[str, list[Any]]:
        columns: dict[str, list[Any]] = {}
        for column in self.numeric:
            columns[column] = parse_numbers(list(rows[column]))[0].tolist()
        for column in self.categorical:
            columns[column] = rows[column].tolist()
        return columns

    def backbone_args(self) -> dict[str, int]:
        return {"in_features": self.width}
