"""Read a dataset as ``params.yaml`` declares it: a table (CSV or Parquet, one row per sample)
with label columns and the inputs (image files, signals, feature columns).

Everything is checked before anything is written: each error names the file, the row (as the
line number of a CSV) and the column, and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_models.inputs import INPUTS, InputError, InputSpec, Raw, ReadContext, cell_text
from mtl_models.inputs._base import listing
from mtl_models.tasks import TaskSpec
from pipelines.config import ColumnRef, Params
from pipelines.data.splits import column_split
from pipelines.errors import DataError


@dataclass(frozen=True)
class Table:
    """The rows of the data table, and how to point a user at one of them (the
    ``TableSource`` the input kinds read)."""

    frame: pd.DataFrame
    source: Path
    header: bool

    def __len__(self) -> int:
        return len(self.frame)

    def cells(self, column: str) -> list[Any]:
        return self.frame[column].tolist()

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
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            written = list(frame.columns)
        else:
            # strings as written, so a label "07" or "Adelie" is judged as the user wrote it;
            # "a.png, 0, 1" (a space after each comma) reads like "a.png,0,1"
            frame = pd.read_csv(
                path, header=0 if header else None, dtype=str, skipinitialspace=True
            )
            # pandas renames a repeated header name ("path", "path.1"): the header as written
            first = pd.read_csv(path, header=None, nrows=1, dtype=str, skipinitialspace=True)
            written = list(first.iloc[0]) if header else []
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: is empty (data.table); expected a header and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as a table (data.table): {detail}") from None
    _refuse_repeated_names(path, written)
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"{path}: has no rows")
    return Table(frame.reset_index(drop=True), path, header)


def _refuse_repeated_names(path: Path, names: list[Any]) -> None:
    """A column named twice: which one a params key means is anyone's guess (pandas would
    call the second ``path.1``, and a key naming ``path`` would read the first alone)."""
    first: dict[str, int] = {}
    for position, name in enumerate(map(cell_text, names)):
        if name is None:  # an empty header cell: pandas names it "Unnamed: N"
            continue
        if name in first:
            raise DataError(
                f"{path}: column '{name}' is named twice in the header (positions "
                f"{first[name]} and {position}, from 0); rename one"
            )
        first[name] = position


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
        raise DataError(f"{table.source}: invalid labels\n  " + listing(problems))
    return labels


@dataclass
class Dataset:
    """Labels and raw inputs of every row, and the unfitted input specs."""

    table: Table
    labels: np.ndarray
    raw: dict[str, Raw]  # name -> the raw values its kind reads, e.g. (numeric, categorical)
    specs: dict[str, InputSpec]
    groups: np.ndarray | None
    # the split a table column gives (split.column): row indices, and how each was chosen
    given_split: tuple[dict[str, np.ndarray], dict[str, dict[str, object]]] | None = None


def read_dataset(params: Params, root: Path) -> Dataset:
    """The whole dataset, checked: labels, groups and a given split first (cheap), then
    every input's files."""
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
    given_split = None
    if params.split.column is not None:
        column = table.column(params.split.column, "split.column")
        given_split = column_split(table, column, groups)
    raw: dict[str, Raw] = {}
    specs: dict[str, InputSpec] = {}
    context = ReadContext(folder, data.default_image_size)
    for name, cfg in data.inputs.items():
        try:
            specs[name], raw[name] = INPUTS.get(cfg.kind).read(name, cfg, table, context)
        except InputError as exc:
            raise DataError(str(exc)) from None
    return Dataset(table, labels, raw, specs, groups, given_split)


def fit_and_encode(
    dataset: Dataset, index: dict[str, np.ndarray]
) -> tuple[dict[str, InputSpec], dict[str, dict[str, np.ndarray]]]:
    """Fit each input's encoding on the training rows only; encoded arrays per split."""
    fitted: dict[str, InputSpec] = {}
    train = index["train"]
    for name, spec in dataset.specs.items():
        try:
            fitted[name] = spec.fit(*(array[train] for array in dataset.raw[name]))
        except ValueError as exc:
            raise DataError(f"{dataset.table.source}: input '{name}': {exc}") from None
    out: dict[str, dict[str, np.ndarray]] = {}
    for split, idx in index.items():
        out[split] = {
            name: spec.encode(*(array[idx] for array in dataset.raw[name]))
            for name, spec in fitted.items()
        }
    return fitted, out
