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

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from mtl_models.inputs import InputSpec, input_from_dict, input_to_dict
from mtl_models.tasks import TaskSpec
from pipelines.errors import DataError
from pipelines.files import ProjectPaths, atomic_dir

SPLITS = ("train", "val", "test")
INPUT_PREFIX = "input_"  # file name of each input's array: input_<name>.npy
LABELS, TASKS = "labels.npy", "tasks.npy"
INPUTS_FILE, SUMMARY_FILE = "inputs.json", "split.json"

ArraysByInput = dict[str, np.ndarray]  # one split's encoded arrays, by input name


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


def check_labelled(
    labels: np.ndarray, tasks: Sequence[TaskSpec], index: dict[str, np.ndarray], source: object
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
            + ". Label more rows for these tasks or change the split fractions"
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
) -> dict[str, dict[str, object]]:
    """Replace ``data/splits/`` as a whole (or not at all): per split its table rows
    (``<split>.csv``), its arrays (``<split>/*.npy``), then ``inputs.json`` (the encodings
    fitted on train) and ``split.json`` (sizes and content hashes)."""
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
            summary[name] = {"n": len(labels[name]), "sha256": _digest(folder)}
        specs_json = [input_to_dict(s) for s in specs]
        (scratch / INPUTS_FILE).write_text(json.dumps(specs_json, indent=2) + "\n")
        (scratch / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_split(
    paths: ProjectPaths, name: str, tasks: Sequence[TaskSpec]
) -> tuple[ArraysByInput, np.ndarray]:
    """Inputs (by name) and labels of one split, checked against the tasks in params, as
    copy-on-write memory maps: writable for ``torch.from_numpy``, the files untouched."""
    folder = paths.split_dir(name)
    if not (folder / LABELS).is_file():
        raise DataError(f"{folder}: not found; run `mtlflow split` (or `dvc repro`) first")
    stored = np.load(folder / TASKS).tolist()
    expected = [t.name for t in tasks]
    if stored != expected:
        raise DataError(
            f"{folder}: made for tasks {stored} but params has {expected}; rerun `mtlflow split`"
        )
    inputs = {
        f.stem.removeprefix(INPUT_PREFIX): np.load(f, mmap_mode="c")
        for f in sorted(folder.glob(f"{INPUT_PREFIX}*.npy"))
    }
    return inputs, np.load(folder / LABELS, mmap_mode="c")


def load_input_specs(paths: ProjectPaths) -> tuple[InputSpec, ...]:
    """The inputs as split read them, with their encodings fitted on the training rows."""
    path = paths.splits_dir / INPUTS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run `mtlflow split` (or `dvc repro`) first")
    return tuple(input_from_dict(d) for d in json.loads(path.read_text()))


def split_digest(paths: ProjectPaths) -> str:
    """One content hash of the three splits (as recorded in ``split.json``)."""
    info = json.loads((paths.splits_dir / SUMMARY_FILE).read_text())
    joined = "".join(info[name]["sha256"] for name in SPLITS)
    return hashlib.sha256(joined.encode()).hexdigest()
