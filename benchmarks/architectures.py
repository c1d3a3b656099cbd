"""Each sharing architecture against hard sharing (HPS): test score per task, parameters and
time per training step, on the defect data and the penguins and signals examples.

    python benchmarks/architectures.py --threads 1 --out /tmp/architectures.json  # all, 3 seeds
    python benchmarks/architectures.py --datasets penguins --architectures hps,mmoe,hps@null
    python benchmarks/architectures.py --seeds 1 --epochs 2 --out /tmp/smoke.json   # smoke
    python benchmarks/architectures.py --set defects:model.backbone.width=32

Each dataset is prepared and split once, by the project's own ``prepare`` and ``split``
stages, into a scratch folder (``--workdir``, a temporary one by default), from its params
file: ``params.yaml`` (defects), ``examples/penguins/params.yaml`` and
``examples/signals/params.yaml``. Every architecture then trains through
``pipelines.services.fitting.fit`` (the path ``train`` uses) with the same budget: the
dataset's own learning rate, batch size, augmentation and class weighting; weighting
``equal``; the epochs of ``--epochs`` with no early stopping (the weights of the best
validation epoch are kept, as ``train`` does); no task-affinity measurement; no tuning.
Only the architecture and its split point (``model.shared_depth``, see ``SPLITS``) change;
the benchmark's own per-dataset overrides are in ``DATASETS``. Seeds (``--seeds n`` from
``--first-seed``, 0) set ``train.seed`` (initialisation, batch order, augmentation); the
split is the same for every run. Scores are the test split's primary score per task
(``score_split``, as ``evaluate``).

Step time (the table's ms/step): after a dataset's fits, a fresh model of each architecture
(built as ``fit`` builds it) takes turns with the others on one fixed training batch: after
a warm-up round, ``--timing-rounds`` rounds in which each runs the optimiser steps that fill
about ``--timing-ms`` (no augmentation); the median over rounds per model, so that load from
other jobs on the machine hits every architecture alike (``--timing-only``: no fits, only
this). The JSON also holds each fit's own ms/step (the training epochs' wall time over
their steps, validation excluded, median over epochs 2..n).

Prints a progress line per fit and one markdown table per dataset; ``--out`` gets every fit
(written after each, so ``--resume`` continues an interrupted benchmark); ``--report`` prints
the tables of several such files (e.g. seeds run in two processes) without fitting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# dataset -> (params file, default epochs, the benchmark's own overrides for it: what keeps
# 72 fits on 2 busy CPU cores within the hour; `--set` wins over them)
DATASETS: dict[str, tuple[Path, int, tuple[str, ...]]] = {
    # the default cnn at width 16 (a quarter of the multiply-adds of width 32; it reached the
    # same validation score in 8 epochs), all 1,500 images, 6 epochs
    "defects": (REPO / "params.yaml", 6, ("model.backbone.width=16",)),
    "penguins": (REPO / "examples" / "penguins" / "params.yaml", 60, ()),
    "signals": (REPO / "examples" / "signals" / "params.yaml", 30, ()),
}
ARCHITECTURES = ("hps", "hps@split", "mmoe", "cgc", "ple", "dselect_k", "mtan", "cross_stitch")
PARAMS = "params"  # keep the params file's model.shared_depth
# dataset -> architecture -> model.shared_depth (None: every block shared); "*" is the split
# of the expert and column architectures (mmoe, cgc, dselect_k, cross_stitch), which need
# blocks after the split point. MTAN attends over the shared trunk's stages, so it shares
# all of them. `name@depth` on the command line overrides this; `name@split` is the "*"
# split (hps@split: hard sharing with a branch per task from where the experts start).
SPLITS: dict[str, dict[str, int | str | None]] = {
    # cnn depth 4: one expert/column = a copy of block 4 (8x8 maps); PLE needs two stages
    # after the split for two levels (at 3 it is CGC), so it copies blocks 3-4
    "defects": {"hps": PARAMS, "mtan": None, "ple": 2, "*": 3},
    # mlp depth 2: an expert/column = a copy of the second Linear-ReLU block (PLE = CGC)
    "penguins": {"hps": PARAMS, "mtan": None, "*": 1},
    # fusion depth 2 (block 0 = both encoders + projection): an expert copies block 1
    "signals": {"hps": PARAMS, "mtan": None, "*": 1},
}


def parse_architecture(item: str, dataset: str) -> tuple[str, str, int | str | None]:
    """``mmoe``, ``mmoe@2``, ``hps@split`` or ``hps@null`` (every block shared) ->
    (label, name, shared_depth)."""
    splits = SPLITS[dataset]
    name, _, depth = item.partition("@")
    if not depth:
        return name, name, splits.get(name, splits["*"])
    value = splits["*"] if depth == "split" else None if depth == "null" else int(depth)
    return f"{name}@{'null' if value is None else value}", name, value


class _Counting:
    """Iterates a loader and counts its batches (the optimiser steps of an epoch)."""

    def __init__(self, loader: Iterable[Any]):
        self.loader, self.steps = loader, 0

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.steps += 1
            yield batch


def step_timer() -> Any:
    """A trainer callback that times each training epoch (validation excluded)."""
    from mtl_models.train.trainer import Callback

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.epochs: list[tuple[float, int]] = []  # (seconds, steps)

        def on_train_begin(self, trainer: Any) -> None:
            train_epoch = trainer.train_epoch

            def timed(loader: Iterable[Any]) -> Any:
                counting = _Counting(loader)
                start = time.perf_counter()
                stats = train_epoch(counting)
                self.epochs.append((time.perf_counter() - start, counting.steps))
                return stats

            trainer.train_epoch = timed

        def ms_per_step(self) -> float:
            rates = [1000 * s / n for s, n in self.epochs if n]
            return statistics.median(rates[1:] or rates)

    return StepTimer()


def dataset_overrides(dataset: str, overrides: list[str], epochs: int) -> list[str]:
    """The overrides of every run on ``dataset``: the shared budget, the benchmark's own
    for the dataset, then ``--set`` (for all datasets, or ``dataset:KEY=VALUE``)."""
    budget = [
        f"train.epochs={epochs}",
        "train.patience=null",  # no early stopping; the best validation epoch is kept
        "train.weighting={method: equal}",
        "train.affinity.enabled=false",
        "tune.enabled=false",
        # tuning is off; its search space (params.yaml samples shared_depth 3-4) would
        # otherwise be checked against each architecture and refuse the expert ones at 4
        "tune.search_space={}",
    ]
    own = [o.partition(":")[2] for o in overrides if o.partition(":")[0] == dataset]
    common = [o for o in overrides if ":" not in o.partition("=")[0]]
    return [*budget, *DATASETS[dataset][2], *common, *own]


def prepare_dataset(params_file: Path, overrides: list[str], root: Path) -> Any:
    """Prepare and split the dataset into ``root`` with the project's own stages (kept when
    ``root`` already holds a split: ``--workdir`` reused)."""
    from pipelines import stages
    from pipelines.config import load_params
    from pipelines.files import ProjectPaths

    paths = ProjectPaths(root)
    if not (paths.split_dir("test") / "labels.npy").is_file():
        params = load_params(params_file, overrides)
        stages.prepare(params, paths)
        stages.split(params, paths)
    return paths


def run_params(
    params_file: Path,
    overrides: list[str],
    architecture: str,
    shared_depth: int | str | None,
    seed: int,
) -> Any:
    """The params of one run: the dataset's, the budget, the architecture and its split."""
    from pipelines.config import load_params

    extra = [f"model.architecture={{name: {architecture}}}", f"train.seed={seed}"]
    if shared_depth != PARAMS:
        extra.append(f"model.shared_depth={'null' if shared_depth is None else shared_depth}")
    return load_params(params_file, [*overrides, *extra])


def run_one(params: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Fit one architecture with one seed: its test scores, size and step time in the fit."""
    from pipelines.services.augmentation import resolve_augmentation
    from pipelines.services.fitting import fit
    from pipelines.services.scoring import score_split

    timer = step_timer()
    start = time.perf_counter()
    fitted = fit(
        params,
        data["train"],
        data["val"],
        resolve_augmentation(params),
        callbacks=[timer],
        input_specs=data["specs"],
    )
    seconds = time.perf_counter() - start
    fitted.model.eval()
    _, metrics = score_split(fitted.model, *data["test"], data["train"][1], fitted.tasks)
    scores = {task: float(m["score"]) for task, m in metrics.items()}
    return {
        "architecture": params.model.architecture.name,
        "shared_depth": params.model.shared_depth,
        "seed": params.train.seed,
        "scores": scores,
        "metric": {t.name: t.primary_metric for t in fitted.tasks},
        "mean_score": statistics.mean(scores.values()),
        "parameters": sum(p.numel() for p in fitted.model.parameters()),
        "fit_ms_per_step": timer.ms_per_step(),
        "steps_per_epoch": timer.epochs[0][1],
        "epochs": len(timer.epochs),
        "best_epoch": fitted.result.best_epoch,
        "seconds": seconds,
    }


def fresh_model(params: Any, data: dict[str, Any]) -> Any:
    """The untrained model ``fit`` would build from ``params`` (for the step-time loop)."""
    from mtl_models.nn.model import build_model
    from mtl_models.train.loaders import Shard
    from pipelines.services.distributed import device_for
    from pipelines.services.fitting import fit_task_specs, model_spec, starting_backbone

    per_class = {name: params.class_weighting(name) for name in params.tasks}
    tasks = fit_task_specs(params.task_specs(), data["train"][1], per_class)
    spec = model_spec(params, tasks, data["specs"])
    backbone, _ = starting_backbone(params, spec)
    return build_model(spec, backbone).to(device_for(params, Shard()))


def time_steps(
    models: dict[str, Any], data: dict[str, Any], batch_size: int, rounds: int, round_ms: float
) -> dict[str, float]:
    """Median ms per optimiser step of each model on one fixed training batch (no
    augmentation), ``equal`` weighting, the models taking turns so that load from other jobs
    hits all alike: after a warm-up round, ``rounds`` rounds in which each model runs as many
    steps as fill about ``round_ms``; the median over rounds of each round's mean."""
    from mtl_models.train.loaders import MultiTaskDataset, make_loader
    from mtl_models.train.trainer import Trainer
    from mtl_models.weighting import build_weighting

    inputs, labels = data["train"]
    loader = make_loader(MultiTaskDataset(inputs, labels), batch_size, shuffle=False)
    batch = [next(iter(loader))]
    trainers = {
        label: Trainer(
            model,
            build_weighting("equal", model.task_names),
            epochs=1,
            device=next(model.parameters()).device,
        )
        for label, model in models.items()
    }

    def steps(trainer: Any, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            trainer.train_epoch(batch)  # one batch: exactly one optimiser step
        return 1000 * (time.perf_counter() - start) / n

    counts = {}
    for label, trainer in trainers.items():  # warm-up; sizes the rounds
        steps(trainer, 1)
        counts[label] = max(1, min(100, round(round_ms / steps(trainer, 2))))
    times: dict[str, list[float]] = {label: [] for label in trainers}
    for _ in range(rounds):
        for label, trainer in trainers.items():
            times[label].append(steps(trainer, counts[label]))
    return {label: statistics.median(t) for label, t in times.items()}


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]], timing: dict[str, dict[str, float]]) -> list[dict]:
    """One row per (dataset, architecture label): means and spreads over seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["label"]), []).append(run)
    rows = []
    for (dataset, label), group in groups.items():
        tasks = list(group[0]["scores"])
        rows.append(
            {
                "dataset": dataset,
                "label": label,
                "shared_depth": group[0]["shared_depth"],
                "seeds": len(group),
                "mean": statistics.mean(r["mean_score"] for r in group),
                "spread": _spread([r["mean_score"] for r in group]),
                "tasks": {
                    t: (
                        statistics.mean(r["scores"][t] for r in group),
                        _spread([r["scores"][t] for r in group]),
                    )
                    for t in tasks
                },
                "parameters": group[0]["parameters"],
                "ms_per_step": timing.get(dataset, {}).get(label, math.nan),
                "fit_ms_per_step": statistics.median(r["fit_ms_per_step"] for r in group),
                "seconds": statistics.mean(r["seconds"] for r in group),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        first = next(r for r in runs if r["dataset"] == dataset)
        tasks = list(mine[0]["tasks"])
        metrics = ", ".join(f"{t}: {m}" for t, m in first["metric"].items())
        base = next((r for r in mine if r["label"] == "hps"), mine[0])
        out.append(
            f"**{dataset}**: {first['epochs']} epochs of {first['steps_per_epoch']} steps; "
            f"test {metrics}; mean ± sd over {mine[0]['seeds']} seeds\n"
        )
        out.append(
            "| architecture | shared_depth | mean | Δ vs hps | "
            + " | ".join(tasks)
            + " | parameters | ms/step | x hps | s/fit |"
        )
        out.append("|---|---:|---:|---:|" + "---:|" * len(tasks) + "---:|---:|---:|---:|")
        for r in mine:
            depth = "null" if r["shared_depth"] is None else r["shared_depth"]
            cells = [f"{m:.3f} ± {s:.3f}" for m, s in r["tasks"].values()]
            out.append(
                f"| {r['label']} | {depth} | {r['mean']:.3f} ± {r['spread']:.3f} | "
                f"{r['mean'] - base['mean']:+.3f} | "
                + " | ".join(cells)
                + f" | {r['parameters']:,} | {r['ms_per_step']:.0f} | "
                f"{r['ms_per_step'] / base['ms_per_step']:.1f} | {r['seconds']:.0f} |"
            )
        out.append("")
    return "\n".join(out)


def report(files: list[Path]) -> None:
    """The tables of results files written by earlier invocations."""
    runs: list[dict[str, Any]] = []
    timing: dict[str, dict[str, float]] = {}
    machines = []
    for file in files:
        data = json.loads(file.read_text())
        runs += data["runs"]
        timing |= data.get("timing", {})
        if "machine" in data:
            machines.append(data["machine"])
    print("; ".join(dict.fromkeys(machines)) + "\n")
    print(markdown(summarize(runs, timing), runs))


def _epochs_by_dataset(value: str | None, datasets: list[str]) -> dict[str, int]:
    epochs = {d: DATASETS[d][1] for d in datasets}
    for item in (value or "").split(","):
        name, sep, n = item.strip().rpartition("=")
        if sep:
            epochs[name] = int(n)
        elif n:
            epochs = dict.fromkeys(datasets, int(n))
    return epochs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    parser.add_argument(
        "--architectures",
        default=",".join(ARCHITECTURES),
        help="comma-separated; name@N sets model.shared_depth N, name@null shares every "
        "block, name@split uses the experts' split (hps@split)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="n seeds: first-seed..first-seed+n-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--epochs",
        help="N for every dataset, or per dataset (default defects=6,penguins=60,signals=30)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="[DATASET:]KEY=VALUE",
        help="params override for every dataset, or one (defects:model.backbone.width=32)",
    )
    parser.add_argument(
        "--timing-rounds", type=int, default=7, help="rounds of the step-time loop (0: skip)"
    )
    parser.add_argument(
        "--timing-ms", type=float, default=300, help="time per model per round (steps fill it)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "out" / "architectures.json"
    )
    parser.add_argument("--resume", action="store_true", help="skip the fits already in --out")
    parser.add_argument(
        "--timing-only", action="store_true", help="no fits: only the step-time loop"
    )
    parser.add_argument("--workdir", type=Path, help="scratch for the splits (default: temporary)")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's; 1 on a loaded machine)"
    )
    parser.add_argument(
        "--report",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="fit nothing: print the tables of these results files (runs of several "
        "invocations, e.g. seeds split over two processes, merged; the last step times win)",
    )
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return

    import torch

    from pipelines import runtime
    from pipelines.config import load_params
    from pipelines.data.splits import load_input_specs, load_split

    runtime.quiet_environment()
    runtime.keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown datasets {unknown}; known: {list(DATASETS)}")
    items = [a.strip() for a in args.architectures.split(",") if a.strip()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    epochs = _epochs_by_dataset(args.epochs, datasets)
    runs: list[dict[str, Any]] = []
    if args.resume and args.out.is_file():
        runs = json.loads(args.out.read_text())["runs"]
    done = {(r["dataset"], r["label"], r["seed"]) for r in runs}
    timing: dict[str, dict[str, float]] = {}
    total = len(datasets) * len(items) * args.seeds
    count = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="arch-bench-") as tmp:
        scratch = args.workdir or Path(tmp)
        for dataset in datasets:
            params_file = DATASETS[dataset][0]
            overrides = dataset_overrides(dataset, args.overrides, epochs[dataset])
            paths = prepare_dataset(params_file, overrides, scratch / dataset)
            params = load_params(params_file, overrides)
            tasks = params.task_specs()
            data = {
                "train": load_split(paths, "train", tasks),
                "val": load_split(paths, "val", tasks),
                "test": load_split(paths, "test", tasks),
                "specs": load_input_specs(paths),
            }
            seeds = [] if args.timing_only else range(args.first_seed, args.first_seed + args.seeds)
            for seed in seeds:
                for item in items:
                    count += 1
                    label, name, depth = parse_architecture(item, dataset)
                    if (dataset, label, seed) in done:
                        continue
                    run = run_one(run_params(params_file, overrides, name, depth, seed), data)
                    run |= {"dataset": dataset, "label": label}
                    runs.append(run)
                    print(
                        f"[{count}/{total} {time.perf_counter() - start:5.0f} s] {dataset} "
                        f"{label} (shared_depth {run['shared_depth']}) seed {seed}: mean "
                        f"{run['mean_score']:.3f} "
                        f"[{' '.join(f'{v:.3f}' for v in run['scores'].values())}] "
                        f"{run['parameters']:,} params, {run['fit_ms_per_step']:.0f} ms/step "
                        f"in the fit, best epoch {run['best_epoch']}, {run['seconds']:.0f} s",
                        flush=True,
                    )
                    args.out.write_text(json.dumps({"runs": runs}, indent=1))
            if args.timing_rounds:
                models = {}
                for item in items:
                    label, name, depth = parse_architecture(item, dataset)
                    models[label] = fresh_model(
                        run_params(params_file, overrides, name, depth, 0), data
                    )
                timing[dataset] = time_steps(
                    models, data, params.train.batch_size, args.timing_rounds, args.timing_ms
                )
                print(
                    f"{dataset} ms/step: "
                    + ", ".join(f"{k} {v:.0f}" for k, v in timing[dataset].items()),
                    flush=True,
                )

    rows = summarize(runs, timing)
    machine = (
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), {date.today()}"
    )
    args.out.write_text(
        json.dumps({"machine": machine, "runs": runs, "timing": timing, "rows": rows}, indent=1)
    )
    print(f"\n{machine}; {time.perf_counter() - start:.0f} s\n")
    if runs:
        print(markdown(rows, runs))


if __name__ == "__main__":
    main()
