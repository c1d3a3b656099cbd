"""Compare weighting methods on the defect data: same splits, seeds and budget for each.

    python benchmarks/compare_weighting.py --methods equal uw famo upgrad pcgrad aligned_mtl
    python benchmarks/compare_weighting.py --methods upgrad upgrad/features --seeds 0 1 2

Prepares and splits the data once (from ``params.yaml``), then trains and evaluates one model
per method and seed (``train.seed``) in ``--workdir`` (each an MLflow run in its
``mlflow.db``), and prints a markdown table of the per-task test scores (mean ± sd over
seeds). ``method/features`` is an aggregator on its feature-level path
(``train.weighting.level``). Extra ``--set`` overrides apply to every method.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from pipelines import runtime, stages
from pipelines.config import load_params
from pipelines.files import ProjectPaths

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--methods", nargs="+", default=["equal", "uw", "famo", "upgrad", "pcgrad", "aligned_mtl"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "weighting")
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    runtime.quiet_environment()
    runtime.keep_freed_memory()

    workdir = args.workdir.resolve()
    shared = ProjectPaths(workdir / "shared")
    tracking = [
        f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
        "tracking.experiment=weighting-comparison",
    ]
    base = load_params(args.params, [*args.overrides, *tracking])
    stages.prepare(base, shared)
    stages.split(base, shared)

    results: dict[str, list[dict]] = {}
    for method in args.methods:
        name, _, level = method.partition("/")
        chosen = [
            f"train.weighting.method={name}",
            *([f"train.weighting.level={level}"] * bool(level)),
        ]
        for seed in args.seeds:
            params = load_params(
                args.params, [*args.overrides, *tracking, *chosen, f"train.seed={seed}"]
            )
            paths = ProjectPaths(workdir / method.replace("/", "-") / f"seed-{seed}")
            (paths.root / "data").mkdir(parents=True, exist_ok=True)
            link = paths.splits_dir
            if not link.exists():
                link.symlink_to(shared.splits_dir, target_is_directory=True)
            print(f"\n=== {method}, seed {seed} ===", flush=True)
            start = time.perf_counter()
            run_info = stages.train(params, paths)
            metrics = stages.evaluate(params, paths)
            results.setdefault(method, []).append(
                {
                    "seed": seed,
                    "metrics": metrics,
                    "seconds": time.perf_counter() - start,
                    "best_epoch": run_info["best_epoch"],
                    "run_id": run_info["run_id"],
                }
            )

    table = markdown_table(results)
    print("\n" + table)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    if args.output:
        args.output.write_text(table + "\n")


def _cell(values: list[float], bold: bool = False) -> str:
    mean = statistics.fmean(values)
    text = f"{mean:.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")
    return f"**{text}**" if bold else text


def markdown_table(results: dict[str, list[dict]]) -> str:
    methods = list(results)
    tasks = list(results[methods[0]][0]["metrics"]["tasks"])
    lines = [
        "| task | " + " | ".join(methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for task in tasks:
        scores = [[r["metrics"]["tasks"][task]["score"] for r in results[m]] for m in methods]
        best = max(statistics.fmean(s) for s in scores)
        cells = [_cell(s, statistics.fmean(s) == best) for s in scores]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    means = [[r["metrics"]["summary"]["mean_score"] for r in results[m]] for m in methods]
    lines.append("| **mean** | " + " | ".join(_cell(s, True) for s in means) + " |")
    for label, value in (
        ("collapsed", lambda r: len(r["metrics"]["summary"]["collapsed_tasks"])),
        ("best epoch", lambda r: r["best_epoch"]),
        ("train+eval time (s)", lambda r: round(r["seconds"])),
    ):
        cells = [" / ".join(str(value(r)) for r in results[m]) for m in methods]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
