"""What measuring lookahead task affinity costs in training time, at several `every` values.

Trains the model of params.yaml (with reports/best_params.yaml applied when present, as
`mtlflow train` does) on the project's train split, without affinity and with it, in one
process, alternating the configurations so machine noise hits both alike. Run `dvc repro` (or
`mtlflow prepare && mtlflow split`) first.

    python benchmarks/affinity_overhead.py                  # 3 epochs each, every = 10 and 20
    python benchmarks/affinity_overhead.py --epochs 5 --every 5 10 50
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

from pipelines import runtime
from pipelines.config import load_params, overlay
from pipelines.data.splits import load_split
from pipelines.files import ProjectPaths
from pipelines.services.augmentation import resolve_augmentation
from pipelines.services.best_params import apply_best_params
from pipelines.services.fitting import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--every", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--samples", type=int, nargs="+", default=[16], help="sub-batch sizes; 0 = whole batch"
    )
    args = parser.parse_args()
    runtime.keep_freed_memory()
    paths = ProjectPaths(Path.cwd())
    params, _ = apply_best_params(load_params(Path("params.yaml")), paths)
    tasks = params.task_specs()
    train, val = load_split(paths, "train", tasks), load_split(paths, "val", tasks)
    policy = resolve_augmentation(params)
    configs: dict[str, tuple[int, int] | None] = {"off": None}
    for k in args.every:
        for n in args.samples:
            configs[f"every {k}, {n or 'all'} samples"] = (k, n)
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, every in configs.items():
            values = {"train.epochs": args.epochs, "train.patience": None}
            values |= {"train.affinity.enabled": every is not None}
            if every is not None:
                values |= {"train.affinity.every": every[0]}
                values |= {"train.affinity.samples": every[1] or None}
            result = fit(overlay(params, values), train, val, policy).result
            # epoch 1 warms up allocators and caches; the rest are the steady state
            seconds[name] += [log.seconds for log in result.history[1:]]
    base = statistics.median(seconds["off"])
    steps = -(-len(train[0]) // params.train.batch_size)
    print(
        f"{os.cpu_count()} cores, torch {torch.__version__}, {len(train[0])} train images, "
        f"batch {params.train.batch_size} ({steps} steps/epoch), {len(tasks)} tasks\n"
    )
    print("| affinity | measurements/epoch | s/epoch (median) | overhead |")
    print("|---|---:|---:|---:|")
    for name, every in configs.items():
        median = statistics.median(seconds[name])
        per_epoch = "0" if every is None else f"{steps / every[0]:.1f}"
        print(f"| {name} | {per_epoch} | {median:.2f} | {100 * (median / base - 1):+.0f}% |")


if __name__ == "__main__":
    main()
