"""``split``: read and check the dataset, decode its inputs once, split train/val/test
stratified (by group when asked) or as the table's split column says, and fit the input
encodings on the training rows."""

from __future__ import annotations

import numpy as np

from pipelines.config import Params
from pipelines.data.dataset import Dataset, fit_and_encode, read_dataset
from pipelines.data.splits import (
    check_labelled,
    split_params,
    stratified_split,
    write_splits,
)
from pipelines.errors import DataError
from pipelines.files import ProjectPaths

Index = dict[str, np.ndarray]


def split(params: Params, paths: ProjectPaths) -> dict[str, int]:
    """Write ``data/splits/``; returns the sizes. Nothing is written unless every check
    passes."""
    tasks = params.task_specs()
    dataset = read_dataset(params, paths.root)
    source = dataset.table.source
    if dataset.given_split is not None:
        index, how = dataset.given_split
        column = how["train"]["column"]
        print(
            f"split: rows as column '{column}' of {source} says "
            "(split.train/val/test and split.seed are not used)"
        )
        remedy = f"move labelled rows into these splits (column '{column}')"
    else:
        index, how = _stratified(params, dataset)
        remedy = "change the split fractions"
    check_labelled(dataset.labels, tasks, index, source, remedy)
    specs, encoded = fit_and_encode(dataset, index)
    summary = write_splits(
        paths,
        rows={name: dataset.table.frame.iloc[idx] for name, idx in index.items()},
        labels={name: dataset.labels[idx] for name, idx in index.items()},
        encoded=encoded,
        tasks=tasks,
        specs=list(specs.values()),
        how=how,
        made_with=split_params(params),
    )
    print("split: " + ", ".join(f"{k} {v['n']}" for k, v in summary.items()))
    return {k: int(v["n"]) for k, v in summary.items()}  # type: ignore[call-overload]


def _stratified(params: Params, dataset: Dataset) -> tuple[Index, dict[str, dict[str, object]]]:
    """Iterative stratification in the configured fractions, by group when asked."""
    fractions, seed = params.split.fractions(), params.split.seed
    index = stratified_split(dataset.labels, params.task_specs(), fractions, seed, dataset.groups)
    if any(len(idx) == 0 for idx in index.values()):
        raise DataError(
            f"{dataset.table.source}: {len(dataset.labels)} rows are too few for a "
            f"{fractions} split"
        )
    how: dict[str, dict[str, object]] = {
        name: {"stratified": share, "seed": seed, "group": params.data.group}
        for name, share in fractions.items()
    }
    return index, how
