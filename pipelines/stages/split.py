"""``split``: read and check the dataset, decode its inputs once, split train/val/test
stratified (by group when asked), and fit the input encodings on the training rows."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence

import numpy as np
from filelock import FileLock
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from mtl_models.inputs import InputSpec, input_from_dict, input_to_dict
from mtl_models.tasks import TaskSpec
from pipelines.config import Params
from pipelines.data.dataset import fit_and_encode, read_dataset
from pipelines.errors import DataError
from pipelines.files import ProjectPaths, atomic_dir

SPLITS = ("train", "val", "test")
REGRESSION_BINS = 5
INPUT_PREFIX = "input_"  # npz key of each input's array


def stratification_matrix(labels: np.ndarray, tasks: Sequence[TaskSpec]) -> np.ndarray:
    """One indicator column per (task, class); regression targets binned into quantiles."""
    columns = []
    for t, task in enumerate(tasks):
        values = labels[:, t]
        present = ~np.isnan(values)
        if task.is_discrete:
            classes = range(task.n_classes)  # type: ignore[arg-type]
        else:
            edges = np.nanquantile(values, np.linspace(0, 1, REGRESSION_BINS + 1)[1:-1])
            values = np.where(present, np.digitize(np.nan_to_num(values), edges), np.nan)
            classes = range(REGRESSION_BINS)
        columns.extend((present & (values == c)).astype(np.int8) for c in classes)
    return np.stack(columns, axis=1)


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


def split(params: Params, paths: ProjectPaths) -> dict[str, int]:
    """Write ``data/splits/{train,val,test}.{csv,npz}``, ``inputs.json`` (the input encodings
    fitted on train) and ``split.json``; returns sizes. Nothing is written unless every check
    passes."""
    tasks = params.task_specs()
    dataset = read_dataset(params, paths.root)
    source = dataset.table.source
    fractions = {"train": params.split.train, "val": params.split.val, "test": params.split.test}
    index = stratified_split(dataset.labels, tasks, fractions, params.split.seed, dataset.groups)
    if any(len(idx) == 0 for idx in index.values()):
        raise DataError(f"{source}: {len(dataset.labels)} rows are too few for a {fractions} split")
    check_labelled(dataset.labels, tasks, index, source)
    specs, encoded = fit_and_encode(dataset, index)

    names = np.array([t.name for t in tasks])
    summary: dict[str, dict] = {}
    with atomic_dir(paths.splits_dir) as scratch:
        for name, idx in index.items():
            dataset.table.frame.iloc[idx].to_csv(scratch / f"{name}.csv", index=False)
            arrays = {INPUT_PREFIX + k: v for k, v in encoded[name].items()}
            np.savez(scratch / f"{name}.npz", labels=dataset.labels[idx], tasks=names, **arrays)
            summary[name] = {
                "n": len(idx),
                "sha256": hashlib.sha256((scratch / f"{name}.npz").read_bytes()).hexdigest(),
            }
        specs_json = [input_to_dict(s) for s in specs.values()]
        (scratch / "inputs.json").write_text(json.dumps(specs_json, indent=2) + "\n")
        (scratch / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("split: " + ", ".join(f"{k} {v['n']}" for k, v in summary.items()))
    return {k: v["n"] for k, v in summary.items()}


Inputs = dict[str, np.ndarray]


def load_split(
    paths: ProjectPaths, name: str, tasks: Sequence[TaskSpec]
) -> tuple[Inputs, np.ndarray]:
    """Inputs (by name) and labels of one split, checked against the tasks in params.

    The arrays are memory maps of a decoded copy in ``data/cache/<split sha256>/``: made
    once per split content, then shared, not copied, by every process that trains on it
    (DataLoader workers, DDP ranks, parallel tuning workers)."""
    path = paths.split_file(name)
    if not path.is_file():
        raise DataError(f"{path}: not found; run `mtlflow split` (or `dvc repro`) first")
    data = _cached_arrays(paths, name)
    stored = data["tasks"].tolist()
    expected = [t.name for t in tasks]
    if stored != expected:
        raise DataError(
            f"{path}: made for tasks {stored} but params has {expected}; rerun `mtlflow split`"
        )
    inputs = {
        k.removeprefix(INPUT_PREFIX): v for k, v in data.items() if k.startswith(INPUT_PREFIX)
    }
    return inputs, data["labels"]


def _cached_arrays(paths: ProjectPaths, name: str) -> dict[str, np.ndarray]:
    digest = json.loads((paths.splits_dir / "split.json").read_text())[name]["sha256"]
    folder = paths.cache_dir / digest
    paths.cache_dir.mkdir(parents=True, exist_ok=True)
    # DDP ranks and tuning workers start together: one makes the copy, the others wait for it
    # (atomic_dir alone would let a late process replace the folder another one is reading)
    with FileLock(str(folder) + ".lock"):
        if not folder.is_dir():
            with atomic_dir(folder) as scratch, np.load(paths.split_file(name)) as npz:
                for key in npz.files:
                    np.save(scratch / f"{key}.npy", npz[key])
            _prune_cache(paths)
    # copy-on-write: writable for torch.from_numpy, while the files stay as split made them
    return {f.stem: np.load(f, mmap_mode="c") for f in sorted(folder.glob("*.npy"))}


def _prune_cache(paths: ProjectPaths) -> None:
    """Keep the decoded copies of the current splits only."""
    current = {
        v["sha256"] for v in json.loads((paths.splits_dir / "split.json").read_text()).values()
    }
    for folder in paths.cache_dir.iterdir():
        if folder.is_dir() and folder.name not in current and not folder.name.startswith("."):
            shutil.rmtree(folder, ignore_errors=True)


def load_input_specs(paths: ProjectPaths) -> tuple[InputSpec, ...]:
    """The inputs as split read them, with their encodings fitted on the training rows."""
    path = paths.splits_dir / "inputs.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `mtlflow split` (or `dvc repro`) first")
    return tuple(input_from_dict(d) for d in json.loads(path.read_text()))


def split_digest(paths: ProjectPaths) -> str:
    """One content hash of the three split files (as recorded in ``split.json``)."""
    info = json.loads((paths.splits_dir / "split.json").read_text())
    joined = "".join(info[name]["sha256"] for name in SPLITS)
    return hashlib.sha256(joined.encode()).hexdigest()
