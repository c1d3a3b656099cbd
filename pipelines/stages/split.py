"""``split``: validate labels, decode images once, and split train/val/test stratified."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from PIL import Image, UnidentifiedImageError

from mtl_models.tasks import TaskSpec
from pipelines.config import Params
from pipelines.errors import DataError
from pipelines.files import ProjectPaths, atomic_dir

SPLITS = ("train", "val", "test")
MAX_REPORTED = 5  # problems listed per error before "and N more"
REGRESSION_BINS = 5


def read_labels(manifest: pd.DataFrame, tasks: Sequence[TaskSpec], source: Path) -> np.ndarray:
    """Task label columns -> float ``[N, T]`` (NaN = missing), or a DataError naming row/column."""
    missing = [t.column for t in tasks if t.column not in manifest.columns]
    if missing:
        raise DataError(
            f"{source}: missing label column(s) {missing}; "
            f"columns present: {list(manifest.columns)}"
        )
    labels = np.full((len(manifest), len(tasks)), np.nan)
    problems = []
    for t, task in enumerate(tasks):
        raw = manifest[task.column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        not_numeric = np.flatnonzero(np.isnan(values) & raw.notna().to_numpy())
        bad = np.union1d(not_numeric, task.invalid_label_rows(values))
        for row in bad:
            value = raw.iloc[row]
            value = value.item() if isinstance(value, np.generic) else value  # 7, not np.int64(7)
            # +2: CSV line numbers count the header and start at 1.
            problems.append(
                f"row {row + 2}, column '{task.column}': got {value!r}, "
                f"expected {task.expected_labels()} (task '{task.name}', {task.kind.value})"
            )
        labels[:, t] = values
    if problems:
        more = (
            f"\n  ... and {len(problems) - MAX_REPORTED} more"
            if len(problems) > MAX_REPORTED
            else ""
        )
        raise DataError(
            f"{source}: invalid labels\n  " + "\n  ".join(problems[:MAX_REPORTED]) + more
        )
    return labels


def load_images(rel_paths: Sequence[str], root: Path, size: int, source: Path) -> np.ndarray:
    """Decode and resize every image once: uint8 ``[N, size, size, 1]`` (grey)."""
    out = np.empty((len(rel_paths), size, size, 1), dtype=np.uint8)
    for row, rel in enumerate(rel_paths):
        path = root / str(rel)
        try:
            with Image.open(path) as img:
                img = img.convert("L")
                if img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                out[row, :, :, 0] = np.asarray(img)
        except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
            raise DataError(
                f"{source}: row {row + 2}, column 'path': cannot read {path} ({exc})"
            ) from None
    return out


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
    labels: np.ndarray, tasks: Sequence[TaskSpec], fractions: dict[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Iterative stratification (Sechidis et al., 2011) over every task's classes at once."""
    y = stratification_matrix(labels, tasks)
    first = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=fractions["test"], random_state=seed
    )
    rest, test = next(first.split(np.zeros(len(y)), y))
    val_share = fractions["val"] / (fractions["train"] + fractions["val"])
    second = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_share, random_state=seed)
    train, val = next(second.split(np.zeros(len(rest)), y[rest]))
    return {"train": np.sort(rest[train]), "val": np.sort(rest[val]), "test": np.sort(test)}


def split(params: Params, paths: ProjectPaths) -> dict[str, int]:
    """Write ``data/splits/{train,val,test}.{csv,npz}`` and ``split.json``; returns sizes."""
    source = paths.manifest
    if not source.is_file():
        raise DataError(f"{source}: not found; run `mtlflow prepare` (or `dvc repro`) first")
    manifest = pd.read_csv(source, keep_default_na=True)
    if "path" not in manifest.columns:
        raise DataError(
            f"{source}: missing column 'path'; columns present: {list(manifest.columns)}"
        )
    tasks = params.task_specs()
    labels = read_labels(manifest, tasks, source)  # fail on bad labels before decoding images
    images = load_images(
        manifest["path"].tolist(), paths.raw_dir, params.data.synthetic.image_size, source
    )
    fractions = {"train": params.split.train, "val": params.split.val, "test": params.split.test}
    index = stratified_split(labels, tasks, fractions, params.split.seed)
    if any(len(idx) == 0 for idx in index.values()):
        raise DataError(f"{source}: {len(manifest)} rows are too few for a {fractions} split")

    names = np.array([t.name for t in tasks])
    summary: dict[str, dict] = {}
    with atomic_dir(paths.splits_dir) as scratch:
        for name, idx in index.items():
            manifest.iloc[idx].to_csv(scratch / f"{name}.csv", index=False)
            np.savez(scratch / f"{name}.npz", images=images[idx], labels=labels[idx], tasks=names)
            summary[name] = {
                "n": len(idx),
                "sha256": hashlib.sha256((scratch / f"{name}.npz").read_bytes()).hexdigest(),
            }
        (scratch / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("split: " + ", ".join(f"{k} {v['n']}" for k, v in summary.items()))
    return {k: v["n"] for k, v in summary.items()}


def load_split(
    paths: ProjectPaths, name: str, tasks: Sequence[TaskSpec]
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, checked against the tasks in params."""
    path = paths.split_file(name)
    if not path.is_file():
        raise DataError(f"{path}: not found; run `mtlflow split` (or `dvc repro`) first")
    with np.load(path) as data:
        stored = data["tasks"].tolist()
        expected = [t.name for t in tasks]
        if stored != expected:
            raise DataError(
                f"{path}: made for tasks {stored} but params has {expected}; rerun `mtlflow split`"
            )
        return data["images"], data["labels"]


def split_digest(paths: ProjectPaths) -> str:
    """One content hash of the three split files (as recorded in ``split.json``)."""
    info = json.loads((paths.splits_dir / "split.json").read_text())
    joined = "".join(info[name]["sha256"] for name in SPLITS)
    return hashlib.sha256(joined.encode()).hexdigest()
