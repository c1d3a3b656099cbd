"""Read a dataset as ``params.yaml`` declares it: a table (CSV or Parquet, one row per sample)
with label columns and the inputs (image files, signals, feature columns).

Everything is checked before anything is written: each error names the file, the row (as the
line number of a CSV) and the column, and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from mtl_models.inputs import FeatureInput, ImageInput, InputSpec, SignalInput, cell_text
from mtl_models.tasks import TaskSpec
from pipelines.config import (
    ColumnRef,
    FeaturesInputConfig,
    ImageInputConfig,
    Params,
    SignalInputConfig,
)
from pipelines.errors import DataError

MAX_REPORTED = 5  # problems listed per error before "and N more"


def _listing(problems: Sequence[str]) -> str:
    more = len(problems) - MAX_REPORTED
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return "\n  ".join(problems[:MAX_REPORTED]) + tail


@dataclass(frozen=True)
class Table:
    """The rows of the data table, and how to point a user at one of them."""

    frame: pd.DataFrame
    source: Path
    header: bool

    def row(self, index: int) -> str:
        """A row as the user finds it: the CSV line number, or the Parquet row index."""
        if self.source.suffix == ".parquet":
            return f"row {index}"
        return f"row {index + (2 if self.header else 1)}"

    def column(self, ref: ColumnRef, key: str) -> str:
        """The frame's label for a column given by name or position, or a DataError naming
        the params key."""
        columns = [str(c) for c in self.frame.columns]
        if isinstance(ref, int) and 0 <= ref < len(columns):
            return columns[ref]
        if isinstance(ref, str) and ref in columns:
            return ref
        shown = columns if self.header else f"positions 0..{len(columns) - 1}"
        raise DataError(
            f"{self.source}: {key} names column {ref!r}, which does not exist; columns: {shown}"
        )


def read_table(path: Path, header: bool, generated: bool) -> Table:
    if not path.is_file():
        hint = "run `mtlflow prepare` (or `dvc repro`) first" if generated else "see data.dir"
        raise DataError(f"{path}: not found (data.table); {hint}")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        # strings as written, so a label "07" or "Adelie" is judged as the user wrote it;
        # "a.png, 0, 1" (a space after each comma) reads like "a.png,0,1"
        frame = pd.read_csv(path, header=0 if header else None, dtype=str, skipinitialspace=True)
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"{path}: has no rows")
    return Table(frame.reset_index(drop=True), path, header)


def _label_values(raw: pd.Series, task: TaskSpec) -> np.ndarray:
    if task.classes is None:
        return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    index = {name: float(k) for k, name in enumerate(task.classes)}
    texts = [cell_text(v) for v in raw]
    return np.array([np.nan if t is None else index.get(t, -1.0) for t in texts], dtype=float)


def _shown(value: object) -> str:
    """A cell as the user wrote it: 7 and 1.5 as numbers, anything else quoted."""
    try:
        number = float(str(value))
    except ValueError:
        return repr(value)
    return str(int(number)) if number.is_integer() else str(number)


def read_labels(table: Table, tasks: Sequence[TaskSpec], params: Params) -> np.ndarray:
    """Task label columns -> float ``[N, T]`` (NaN = missing), or a DataError naming each bad
    row and column."""
    labels = np.full((len(table.frame), len(tasks)), np.nan)
    problems = []
    for t, task in enumerate(tasks):
        ref = params.tasks[task.name].column
        column = table.column(task.name if ref is None else ref, f"tasks.{task.name}.column")
        raw = table.frame[column]
        values = _label_values(raw, task)
        not_read = np.flatnonzero(np.isnan(values) & raw.notna().to_numpy())
        bad = np.union1d(not_read, task.invalid_label_rows(values))
        for row in bad:
            problems.append(
                f"{table.row(row)}, column '{column}': got {_shown(raw.iloc[row])}, "
                f"expected {task.expected_labels()} (task '{task.name}', {task.kind})"
            )
        labels[:, t] = values
    if problems:
        raise DataError(f"{table.source}: invalid labels\n  " + _listing(problems))
    return labels


def _gather(
    table: Table,
    cells: Sequence[Any],
    column: str,
    read: Callable[[Any], np.ndarray],
    files: bool = True,
) -> list[np.ndarray]:
    """``read`` every cell (a file path, or an array), collecting every failure into one
    DataError (count + first few)."""
    out, problems = [], []
    for row, cell in enumerate(cells):
        shown = Path(str(cell)) if files else "value"
        try:
            if cell is None or (files and cell_text(cell) in (None, "")):
                raise ValueError("empty cell")
            out.append(read(Path(str(cell)) if files else cell))
        except (OSError, ValueError, TypeError, UnidentifiedImageError) as exc:
            problems.append(f"{table.row(row)}, column '{column}': {shown} ({exc})")
    if problems:
        what = "files" if files else "values"
        raise DataError(
            f"{table.source}: {len(problems)} of {len(cells)} {what} in column '{column}' are "
            "missing or unreadable\n  " + _listing(problems)
        )
    return out


def load_images(
    table: Table, name: str, cfg: ImageInputConfig, size: int, root: Path
) -> np.ndarray:
    """Decode and resize every image once: uint8 ``[N, size, size, channels]``."""
    column = table.column(cfg.column, f"data.inputs.{name}.column")
    mode = "L" if cfg.channels == 1 else "RGB"

    def read(path: Path) -> np.ndarray:
        with Image.open(root / path) as img:
            img = img.convert(mode)
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img).reshape(size, size, cfg.channels)

    images = _gather(table, table.frame[column].tolist(), column, read)
    return np.stack(images).astype(np.uint8)


def _signal_channel(table: Table, name: str, cfg: SignalInputConfig, c: int, root: Path) -> list:
    if cfg.columns:
        column = table.column(cfg.columns[c], f"data.inputs.{name}.columns[{c}]")
        cells = table.frame[column].tolist()
        if any(isinstance(v, list | tuple | np.ndarray) for v in cells):  # a Parquet array column
            return _gather(table, cells, column, lambda v: np.asarray(v, dtype=float), files=False)
        return _gather(table, cells, column, lambda p: np.load(root / p).astype(float))
    folder = root / cfg.folders[c]
    files = sorted(folder.glob("*.npy")) if folder.is_dir() else []
    if len(files) != len(table.frame):
        raise DataError(
            f"{folder}: {len(files)} .npy files but {table.source} has {len(table.frame)} rows "
            f"(data.inputs.{name}.folders[{c}]: the i-th file in name order is row i)"
        )
    return [np.load(f).astype(float) for f in files]


def load_signals(table: Table, name: str, cfg: SignalInputConfig, root: Path) -> np.ndarray:
    """Raw signals, float ``[N, channels, length]``: every one finite, 1-D and of the length
    most rows have (the rows that differ are listed)."""
    channels = [
        _signal_channel(table, name, cfg, c, root) for c in range(len(cfg.columns or cfg.folders))
    ]
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
        raise DataError(
            f"{table.source}: {len(problems)} signals are not finite 1-D arrays of "
            f"{length[0] if len(length) == 1 else length} samples (as most rows are)\n  "
            + _listing(problems)
        )
    return np.stack([np.stack(s) for s in channels], axis=1)


def read_features(
    table: Table, name: str, cfg: FeaturesInputConfig
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Numeric columns as float ``[N, n]`` (NaN = missing; anything else not a number is an
    error naming it), categorical ones as strings ``[N, c]`` (None = missing)."""
    key = f"data.inputs.{name}"
    numeric_cols = [table.column(r, f"{key}.numeric") for r in cfg.numeric]
    categorical_cols = [table.column(r, f"{key}.categorical") for r in cfg.categorical]
    numeric = np.empty((len(table.frame), len(numeric_cols)))
    problems = []
    for j, column in enumerate(numeric_cols):
        raw = table.frame[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        for row in np.flatnonzero((np.isnan(values) & raw.notna().to_numpy()) | np.isinf(values)):
            problems.append(
                f"{table.row(row)}, column '{column}': got {raw.iloc[row]!r}, expected a number "
                f"or empty ({key}.numeric)"
            )
        numeric[:, j] = values
    if problems:
        raise DataError(f"{table.source}: non-numeric features\n  " + _listing(problems))
    categorical = np.empty((len(table.frame), len(categorical_cols)), dtype=object)
    for j, column in enumerate(categorical_cols):
        categorical[:, j] = [cell_text(v) for v in table.frame[column]]
    return numeric, categorical, numeric_cols, categorical_cols


@dataclass
class Dataset:
    """Labels and raw inputs of every row, and the unfitted input specs."""

    table: Table
    labels: np.ndarray
    raw: dict[str, tuple[np.ndarray, ...]]  # name -> (array,) or (numeric, categorical)
    specs: dict[str, InputSpec]
    groups: np.ndarray | None


def read_dataset(params: Params, root: Path) -> Dataset:
    """The whole dataset, checked: labels first (cheap), then every input's files."""
    data = params.data
    folder = root / data.dir
    table = read_table(folder / data.table, data.header, data.source != "files")
    tasks = params.task_specs()
    labels = read_labels(table, tasks, params)
    groups = None
    if data.group is not None:
        column = table.column(data.group, "data.group")
        groups = table.frame[column].to_numpy()
        if pd.isna(groups).any():
            row = int(np.flatnonzero(pd.isna(groups))[0])
            raise DataError(
                f"{table.source}: {table.row(row)}, column '{column}' (data.group) "
                "is empty; every row needs its group"
            )
    raw: dict[str, tuple[np.ndarray, ...]] = {}
    specs: dict[str, InputSpec] = {}
    for name, cfg in data.inputs.items():
        if isinstance(cfg, ImageInputConfig):
            size = data.image_size(name)
            raw[name] = (load_images(table, name, cfg, size, folder / cfg.root),)
            specs[name] = ImageInput(name, size, cfg.channels)
        elif isinstance(cfg, SignalInputConfig):
            signals = load_signals(table, name, cfg, folder / cfg.root)
            raw[name] = (signals,)
            channels = tuple(str(c) for c in (cfg.columns or cfg.folders))
            specs[name] = SignalInput(name, channels, signals.shape[2])
        else:
            numeric, categorical, num_cols, cat_cols = read_features(table, name, cfg)
            raw[name] = (numeric, categorical)
            specs[name] = FeatureInput(name, tuple(num_cols), tuple(cat_cols))
    return Dataset(table, labels, raw, specs, groups)


def fit_and_encode(
    dataset: Dataset, index: dict[str, np.ndarray]
) -> tuple[dict[str, InputSpec], dict[str, dict[str, np.ndarray]]]:
    """Fit each input's encoding on the training rows only; encoded arrays per split."""
    fitted: dict[str, InputSpec] = {}
    train = index["train"]
    for name, spec in dataset.specs.items():
        raw = dataset.raw[name]
        if isinstance(spec, SignalInput):
            fitted[name] = spec.fit(raw[0][train])
        elif isinstance(spec, FeatureInput):
            try:
                fitted[name] = spec.fit(raw[0][train], raw[1][train])
            except ValueError as exc:
                raise DataError(f"{dataset.table.source}: input '{name}': {exc}") from None
        else:
            fitted[name] = spec
    out: dict[str, dict[str, np.ndarray]] = {}
    for split, idx in index.items():
        arrays = {}
        for name, spec in fitted.items():
            raw = dataset.raw[name]
            if isinstance(spec, FeatureInput):
                arrays[name] = spec.encode(raw[0][idx], raw[1][idx])
            elif isinstance(spec, SignalInput):
                arrays[name] = spec.encode(raw[0][idx])
            else:
                arrays[name] = raw[0][idx]
        out[split] = arrays
    return fitted, out
