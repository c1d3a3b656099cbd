"""``split``: read and check the dataset, decode its inputs once, split train/val/test
stratified (by group when asked), and fit the input encodings on the training rows."""

from __future__ import annotations

from pipelines.config import Params
from pipelines.data.dataset import fit_and_encode, read_dataset
from pipelines.data.splits import check_labelled, stratified_split, write_splits
from pipelines.errors import DataError
from pipelines.files import ProjectPaths


def split(params: Params, paths: ProjectPaths) -> dict[str, int]:
    """Write ``data/splits/``; returns the sizes. Nothing is written unless every check
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
    summary = write_splits(
        paths,
        rows={name: dataset.table.frame.iloc[idx] for name, idx in index.items()},
        labels={name: dataset.labels[idx] for name, idx in index.items()},
        encoded=encoded,
        tasks=tasks,
        specs=list(specs.values()),
    )
    print("split: " + ", ".join(f"{k} {v['n']}" for k, v in summary.items()))
    return {k: int(v["n"]) for k, v in summary.items()}  # type: ignore[call-overload]
