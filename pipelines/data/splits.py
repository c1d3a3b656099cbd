"""Train/val/test splits: iterative stratification over every task at once, and the split
files (``data/splits/``) that tune, train, evaluate and baselines read.

A split is written once as plain ``.npy`` arrays (``data/splits/<split>/``) and read back as
copy-on-write memory maps: every process that trains on it (DataLoader workers, DDP ranks,
parallel tuning workers) shares the same pages, and nothing is unpacked or cached elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from mtl_models.inputs import InputSpec, input_from_dict, input_to_dict
from mtl_models.tasks import TaskSpec
from pipelines.errors import DataError
from pipelines.files import ProjectPaths, atomic_dir

if TYPE_CHECKING:
    from pipelines.config import Params
    from pipelines.data.dataset import Table

SPLITS = ("train", "val", "test")
INPUT_PREFIX = "input_"  # file name of each input's array: input_<name>.npy
LABELS, TASKS = "labels.npy", "tasks.npy"
INPUTS_FILE, SUMMARY_FILE = "inputs.json", "split.json"
MADE_WITH_FILE = "params.json"  # the params the split was made with (``split_params``)
# what split reads of each task (the rest, e.g. focal_gamma, is training's)
TASK_KEYS = ("kind", "column", "n_classes", "classes")

ArraysByInput = dict[str, np.ndarray]  # one split's encoded arrays, by input name

# what a split column may say (any case): the names, and the spellings public datasets use
SPLIT_VALUES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
EXPECTED_VALUES = "train, val or test (also training, valid, validation, dev, testing; any case)"


def stratification_matrix(labels: np.ndarray, tasks: Sequence[TaskSpec]) -> np.ndarray:
    """One indicator column per (task, stratum): each kind's strata (classes, or quantile
    bins of a value)."""
    return np.concatenate([task.strata(labels[:, t]) for t, task in enumerate(tasks)], axis=1)


def stratified_split(
    labels: np.ndarray,
    tasks: Sequence[TaskSpec],
    fractions: dict[str, float],
    seed: int,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Iterative stratification (Sechidis et al., 2011) over every task's classes at once.

    With ``groups``, whole groups are split: each group is one item carrying every class any
    of its rows has, so all rows of one physical sample land in the same split.
    """
    y = stratification_matrix(labels, tasks)
    if groups is not None:
        keys, member = np.unique(groups.astype(str), return_inverse=True)
        per_group = np.zeros((len(keys), y.shape[1]), dtype=np.int8)
        np.maximum.at(per_group, member, y)
        by_group = _split_indicator(per_group, fractions, seed)
        return {k: np.flatnonzero(np.isin(member, v)) for k, v in by_group.items()}
    return _split_indicator(y, fractions, seed)


def _split_indicator(
    y: np.ndarray, fractions: dict[str, float], seed: int
) -> dict[str, np.ndarray]:
    first = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=fractions["test"], random_state=seed
    )
    rest, test = next(first.split(np.zeros(len(y)), y))
    val_share = fractions["val"] / (fractions["train"] + fractions["val"])
    second = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_share, random_state=seed)
    train, val = next(second.split(np.zeros(len(rest)), y[rest]))
    return {"train": np.sort(rest[train]), "val": np.sort(rest[val]), "test": np.sort(test)}


def column_split(
    table: Table, column: str, groups: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, object]]]:
    """The split a table's ``column`` (``split.column``) already gives: the row indices of
    each split, and how each was chosen (for ``split.json``). Every row must name its split,
    every split must have rows, and rows sharing a group (``data.group``) one split."""
    cells = table.frame[column]
    given = np.array([_split_name(v) for v in cells], dtype=object)
    bad = np.flatnonzero([name is None for name in given])
    if len(bad):
        shown = ", ".join(f"{table.row(int(r))} {_said(cells.iloc[r])}" for r in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError(
            f"{table.source}: column '{column}' (split.column) must name each row's split, "
            f"{EXPECTED_VALUES}: {shown}{more}"
        )
    index = {name: np.flatnonzero(given == name) for name in SPLITS}
    empty = [name for name in SPLITS if len(index[name]) == 0]
    if empty:
        counts = ", ".join(f"{name} {len(index[name])}" for name in SPLITS)
        raise DataError(
            f"{table.source}: column '{column}' (split.column) puts no rows in "
            f"{' or '.join(empty)} ({counts}); every split needs rows"
        )
    if groups is not None:
        _check_groups_kept(table, column, groups, given)
    how = {
        name: {
            "column": column,
            "values": sorted({str(v).strip() for v in cells.iloc[index[name]]}),
        }
        for name in SPLITS
    }
    return index, how


def _said(cell: object) -> str:
    return "is empty" if pd.isna(cell) else f"has {cell!r}"  # type: ignore[call-overload]


def _split_name(cell: object) -> str | None:
    if pd.isna(cell):  # type: ignore[call-overload]
        return None
    return SPLIT_VALUES.get(str(cell).strip().lower())


def _check_groups_kept(table: Table, column: str, groups: np.ndarray, given: np.ndarray) -> None:
    """Rows sharing a group (one specimen, one patient) must not straddle splits."""
    pairs = pd.DataFrame({"group": groups.astype(str), "split": given})
    spread = pairs.groupby("group", sort=False)["split"].nunique()
    if (spread > 1).any():
        key = spread.index[spread.to_numpy() > 1][0]
        first = pairs[pairs["group"] == key].drop_duplicates("split")
        where = ", ".join(f"{s} ({table.row(int(r))})" for r, s in first["split"].items())
        raise DataError(
            f"{table.source}: group {key!r} (data.group) is in {where} by column "
            f"'{column}' (split.column); rows sharing a group must be in one split"
        )


def check_labelled(
    labels: np.ndarray,
    tasks: Sequence[TaskSpec],
    index: dict[str, np.ndarray],
    source: object,
    remedy: str = "change the split fractions",
) -> None:
    """Every task needs labelled rows in every split, to learn, stop early and be scored."""
    empty = [
        f"task '{task.name}' in {name} ({len(idx)} rows)"
        for t, task in enumerate(tasks)
        for name, idx in index.items()
        if np.isnan(labels[idx, t]).all()
    ]
    if empty:
        raise DataError(
            f"{source}: no labelled rows for "
            + "; ".join(empty)
            + f". Label more rows for these tasks or {remedy}"
        )


def _digest(folder: Path) -> str:
    """Content hash of one split's arrays (file names and bytes, in name order)."""
    sha = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        sha.update(file.name.encode())
        sha.update(file.read_bytes())
    return sha.hexdigest()


def write_splits(
    paths: ProjectPaths,
    rows: dict[str, object],
    labels: dict[str, np.ndarray],
    encoded: dict[str, ArraysByInput],
    tasks: Sequence[TaskSpec],
    specs: Sequence[InputSpec],
    how: dict[str, dict[str, object]],
    made_with: dict[str, object] | None = None,
) -> dict[str, dict[str, object]]:
    """Replace ``data/splits/`` as a whole (or not at all): per split its table rows
    (``<split>.csv``), its arrays (``<split>/*.npy``), then ``inputs.json`` (the encodings
    fitted on train), ``split.json`` (per split: size, content hash, and ``from``: how its
    rows were chosen, ``how[split]``) and ``params.json`` (``made_with``: the params it was
    made with, ``split_params``)."""
    names = np.array([t.name for t in tasks])
    summary: dict[str, dict[str, object]] = {}
    with atomic_dir(paths.splits_dir) as scratch:
        for name in SPLITS:
            rows[name].to_csv(scratch / f"{name}.csv", index=False)  # type: ignore[attr-defined]
            folder = scratch / name
            folder.mkdir()
            np.save(folder / LABELS, labels[name])
            np.save(folder / TASKS, names)
            for key, array in encoded[name].items():
                np.save(folder / f"{INPUT_PREFIX}{key}.npy", array)
            summary[name] = {"n": len(labels[name]), "sha256": _digest(folder), "from": how[name]}
        specs_json = [input_to_dict(s) for s in specs]
        (scratch / INPUTS_FILE).write_text(json.dumps(specs_json, indent=2) + "\n")
        (scratch / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if made_with is not None:
            (scratch / MADE_WITH_FILE).write_text(json.dumps(made_with, indent=2) + "\n")
    return summary


def split_params(params: Params) -> dict[str, object]:
    """What a split is made from: the ``data`` and ``split`` sections and what split reads
    of each task (the params of ``dvc.yaml``'s split stage, less the tasks' training keys)."""
    raw = params.model_dump(by_alias=True, mode="json")
    tasks = {name: {k: task[k] for k in TASK_KEYS} for name, task in raw["tasks"].items()}
    return {"data": raw["data"], "split": raw["split"], "tasks": tasks}


def _flat(node: object, prefix: str = "") -> dict[str, object]:
    """``{"data": {"dir": "x"}}`` -> ``{"data.dir": "x"}`` (an empty mapping is a value)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    flat: dict[str, object] = {}
    for key, sub in node.items():
        flat |= _flat(sub, f"{prefix}.{key}" if prefix else str(key))
    return flat


def check_split_current(params: Params, paths: ProjectPaths) -> None:
    """Before a stage that reads ``data/splits``: it was made with these params, else a
    ``DataError`` naming what changed (``mtlflow train --set data.synthetic.image_size=48``
    after splitting at 32 trained on the old split without a word). A split written before
    ``params.json`` was recorded, or none at all (the stage says so), is not judged."""
    path = paths.splits_dir / MADE_WITH_FILE
    if not path.is_file():
        return
    try:
        made = _flat(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError):
        made = {}  # unreadable: judged as made with nothing, so every key differs
    now = _flat(split_params(params))
    changed = [k for k in sorted(set(made) | set(now)) if made.get(k) != now.get(k)]
    if changed:
        shown = ", ".join(
            f"{k}={json.dumps(made.get(k))} (params: {json.dumps(now.get(k))})" for k in changed[:3]
        )
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise DataError(
            f"{paths.splits_dir} was made with {shown}{more}; run `mtlflow split` (or `dvc repro`)"
        )


def load_split(
    paths: ProjectPaths, name: str, tasks: Sequence[TaskSpec]
) -> tuple[ArraysByInput, np.ndarray]:
    """Inputs (by name) and labels of one split, checked against the tasks in params, as
    copy-on-write memory maps: writable for ``torch.from_numpy``, the files untouched."""
    folder = paths.split_dir(name)
    if not (folder / LABELS).is_file():
        raise DataError(f"{folder}: not found; run `mtlflow split` (or `dvc repro`) first")
    stored = _load_array(folder / TASKS, mmap=False).tolist()
    expected = [t.name for t in tasks]
    if stored != expected:
        raise DataError(
            f"{folder}: made for tasks {stored} but params has {expected}; rerun `mtlflow split`"
        )
    inputs = {
        f.stem.removeprefix(INPUT_PREFIX): _load_array(f)
        for f in sorted(folder.glob(f"{INPUT_PREFIX}*.npy"))
    }
    return inputs, _load_array(folder / LABELS)


def _load_array(path: Path, mmap: bool = True) -> np.ndarray:
    """One split array (memory-mapped copy-on-write); ``DataError`` naming a file cut short
    or edited, not numpy's "mmap length is greater than file size"."""
    try:
        return np.load(path, mmap_mode="c" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"{path}: unreadable ({why}); truncated or edited? rerun `mtlflow split` "
            "(or `dvc repro`)"
        ) from None


def load_input_specs(paths: ProjectPaths) -> tuple[InputSpec, ...]:
    """The inputs as split read them, with their encodings fitted on the training rows."""
    path = paths.splits_dir / INPUTS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run `mtlflow split` (or `dvc repro`) first")
    return tuple(input_from_dict(d) for d in json.loads(path.read_text()))


def _canonical(how: object) -> str:
    # a split.json written before ``from`` was recorded keeps the hash it had
    return "" if how is None else json.dumps(how, sort_keys=True)


def split_digest(paths: ProjectPaths) -> str:
    """One hash of the three splits as ``split.json`` records them: their contents and how
    their rows were chosen (a split column, or stratification with its seed)."""
    info = json.loads((paths.splits_dir / SUMMARY_FILE).read_text())
    joined = "".join(info[name]["sha256"] + _canonical(info[name].get("from")) for name in SPLITS)
    return hashlib.sha256(joined.encode()).hexdigest()
