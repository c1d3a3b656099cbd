"""What every input kind is: a frozen spec that reads its raw values from a data table, fits
and applies its encoding, decodes a served request, and names the backbone that reads it.

Kinds register themselves in :data:`INPUTS` by name (the ``kind`` key of ``params.yaml``'s
``data.inputs`` entries and of ``inputs.json``); nothing outside a kind tests its name.
"""

from __future__ import annotations

import math
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mtl_models._registry import Registry

# A column of the data table: its header name, or its 0-based position (any table; the only
# way to name one when ``data.header`` is false).
ColumnRef = Annotated[str | int, Field(union_mode="left_to_right")]

MAX_REPORTED = 5  # problems listed per error before "and N more"

Raw = tuple[np.ndarray, ...]  # an input's raw values of every row, as its kind reads them


class InputError(ValueError):
    """A data table whose cells an input cannot read; the message names file, row, column."""


class InvalidRequest(ValueError):
    """A request row that cannot be scored; the message names the row and the reason."""


class InputConfig(BaseModel):
    """The base of every kind's ``params.yaml`` entry (``data.inputs.<name>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str


class TableSource(Protocol):
    """What an input kind needs from the data table."""

    @property
    def source(self) -> Path: ...

    def __len__(self) -> int: ...

    def column(self, ref: str | int, key: str) -> str:
        """The label of a column given by name or position; ``key`` is the params key that
        named it, for the error when there is no such column."""
        ...

    def cells(self, column: str) -> list[Any]:
        """Every row's cell of ``column``, as read (None/NaN = empty)."""
        ...

    def row(self, index: int) -> str:
        """A row as the user finds it (``row 7``: a CSV line number or Parquet index)."""
        ...


@dataclass(frozen=True)
class ReadContext:
    """Where an input's files live and the defaults the dataset gives it."""

    root: Path  # the dataset folder (``data.dir``)
    image_size: int = 64  # the size of images whose entry leaves it null


def cell_text(value: object) -> str | None:
    """A table cell as text, the same from CSV, Parquet and a served request: an integer
    stored as a float (a Parquet column with gaps) reads "1", not "1.0"; empty is None."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def listing(problems: Sequence[str]) -> str:
    """The first few problems, one per line, then "... and N more"."""
    more = len(problems) - MAX_REPORTED
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return "\n  ".join(problems[:MAX_REPORTED]) + tail


def gather(
    table: TableSource,
    cells: Sequence[Any],
    column: str,
    read: Callable[[Any], np.ndarray],
    files: bool = True,
) -> list[np.ndarray]:
    """``read`` every cell (a file path, or an array), collecting every failure into one
    InputError (count + first few)."""
    out, problems = [], []
    for row, cell in enumerate(cells):
        shown = Path(str(cell)) if files else "value"
        try:
            if cell is None or (files and cell_text(cell) in (None, "")):
                raise ValueError("empty cell")
            out.append(read(Path(str(cell)) if files else cell))
        except (OSError, ValueError, TypeError) as exc:  # PIL's UnidentifiedImageError: OSError
            problems.append(f"{table.row(row)}, column '{column}': {shown} ({exc})")
    if problems:
        what = "files" if files else "values"
        raise InputError(
            f"{table.source}: {len(problems)} of {len(cells)} {what} in column '{column}' are "
            "missing or unreadable\n  " + listing(problems)
        )
    return out


def inside(root: Path, path: Path) -> Path:
    """``root / path`` for a path the table gives relative to its data folder; a
    ``ValueError`` for an absolute path or one that climbs out with ``..`` (a manifest from
    elsewhere must not make the reader open any file on the machine)."""
    normal = os.path.normpath(path)
    if path.is_absolute() or normal == ".." or normal.startswith(f"..{os.sep}"):
        raise ValueError("outside the data folder: give paths relative to it, without '..'")
    return root / normal


_NOT_REGULAR = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def regular_file(path: Path) -> Path:
    """``path`` when it is a regular file (through symlinks); a ``ValueError`` saying what
    it is otherwise, before anything opens it: reading a named pipe waits for a writer
    forever, and a device never ends."""
    mode = os.stat(path).st_mode  # a missing file: FileNotFoundError, reported as such
    if not stat.S_ISREG(mode):
        what = next((name for test, name in _NOT_REGULAR if test(mode)), "a special file")
        raise ValueError(f"not a regular file but {what}")
    return path


def refuse_duplicates(table: TableSource, cells: Sequence[Any], column: str) -> None:
    """An InputError naming the rows that give the same file twice: copies of one sample
    would land in train and test."""
    first: dict[str, int] = {}
    repeats = []
    for row, cell in enumerate(cells):
        key = cell_text(cell)
        if key is None:
            continue
        key = os.path.normpath(key)
        if key in first:
            repeats.append(f"{table.row(row)} repeats {table.row(first[key])}: {key}")
        else:
            first[key] = row
    if repeats:
        raise InputError(
            f"{table.source}: {len(repeats)} rows name a file another row names, in column "
            f"'{column}' (one sample twice could land in train and test)\n  " + listing(repeats)
        )


def request_columns(frame: pd.DataFrame, needed: Sequence[str], what: str) -> None:
    """An InvalidRequest naming the columns of ``needed`` the request lacks."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InvalidRequest(f"missing {what} column(s) {missing}; got {list(frame.columns)}")


@dataclass(frozen=True)
class InputSpec(ABC):
    """One input of a sample: its name and (once fitted) its encoding. Saved with the model
    (``input_to_dict``), so serving applies exactly the training-time encoding."""

    kind: ClassVar[str]  # the registered name
    Config: ClassVar[type[InputConfig]]  # its ``data.inputs.<name>`` entry
    backbone: ClassVar[str]  # the backbone that reads it alone (``backbone: auto``)
    fusion_depth: ClassVar[int]  # its encoder's depth inside a fusion of several inputs
    augmentable: ClassVar[bool] = False  # label-safe image augmentation applies to it
    # one flat row of columns per sample, which a tree model can read as it is
    tabular: ClassVar[bool] = False

    name: str

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """One sample's encoded shape."""

    @property
    def model_shape(self) -> tuple[int, ...]:
        """One sample's shape as the model reads it (after the loader's conversion)."""
        return self.shape

    @classmethod
    @abstractmethod
    def read(
        cls, name: str, config: Any, table: TableSource, context: ReadContext
    ) -> tuple[Self, Raw]:
        """The unfitted spec and every row's raw values, or an InputError naming each bad
        row and column."""

    def fit(self, *raw: np.ndarray) -> Self:
        """The spec with its encoding fitted on the training rows' raw values."""
        return self

    @abstractmethod
    def encode(self, *raw: np.ndarray) -> np.ndarray:
        """Raw values -> the array the model reads."""

    @abstractmethod
    def decode_request(self, frame: pd.DataFrame) -> Raw:
        """A served request's columns -> raw values, or an InvalidRequest ``row N: ...``."""

    @abstractmethod
    def to_request(self, encoded: np.ndarray, rows: pd.DataFrame) -> dict[str, list[Any]]:
        """Request columns as a client sends them, from encoded arrays and their table rows
        (the inverse of :meth:`decode_request` then :meth:`encode`)."""

    @abstractmethod
    def backbone_args(self) -> dict[str, int]:
        """The size arguments its backbone needs (``in_channels``, ``in_features``)."""


INPUTS: Registry[InputSpec] = Registry("input kind")


def input_to_dict(spec: InputSpec) -> dict[str, Any]:
    return {"kind": spec.kind, **asdict(spec)}


def _tuples(value: Any) -> Any:
    """JSON lists back into the tuples a frozen spec holds."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def input_from_dict(data: Mapping[str, Any]) -> InputSpec:
    data = dict(data)
    cls = INPUTS.get(data.pop("kind"))
    return cls(**{key: _tuples(value) for key, value in data.items()})
