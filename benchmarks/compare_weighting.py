"""Compare weighting methods on the defect data: same splits, seeds and budget for each.

    python benchmarks/compare_weighting.py --methods equal uw famo upgrad pcgrad aligned_mtl

Prepares and splits the data once (from ``params.yaml``), then trains and evaluates one model
per method in ``--workdir`` (each an MLflow run in its ``mlflow.db``), and prints a markdown
table of the per-task test scores. Extra ``--set`` overrides apply to every method.
"""

from __future__ import annotations

import argparse
import json
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

    results: dict[str, dict] = {}
    for method in args.methods:
        params = load_params(
            args.params, [*args.overrides, *tracking, f"train.weighting.method={method}"]
        )
        paths = ProjectPaths(workdir / method)
        (paths.root / "data").mkdir(parents=True, exist_ok=True)
        link = paths.splits_dir
        if not link.exists():
            link.symlink_to(shared.splits_dir, target_is_directory=True)
        print(f"\n=== {method} ===", flush=True)
        start = time.perf_counter()
        run_info = stages.train(params, paths)
        metrics = stages.evaluate(params, paths)
        results[method] = {
            "metrics": metrics,
            "seconds": time.perf_counter() - start,
            "best_epoch": run_info["best_epoch"],
            "run_id": run_info["run_id"],
        }

    table = markdown_table(results)
    print("\n" + table)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    if args.output:
        args.output.write_text(table + "\n")


def markdown_table(results: dict[str, dict]) -> str:
    methods = list(results)
    tasks = list(next(iter(results.values()))["metrics"]["tasks"])
    lines = [
        "| task | " + " | ".join(methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for task in tasks:
        scores = [results[m]["metrics"]["tasks"][task]["score"] for m in methods]
        best = max(scores)
        cells = [f"**{s:.3f}**" if s == best else f"{s:.3f}" for s in scores]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    means = [results[m]["metrics"]["summary"]["mean_score"] for m in methods]
    lines.append("| **mean** | " + " | ".join(f"**{s:.3f}**" for s in means) + " |")
    lines.append(
        "| collapsed | "
        + " | ".join(str(len(results[m]["metrics"]["summary"]["collapsed_tasks"])) for m in methods)
        + " |"
    )
    lines.append(
        "| best epoch | " + " | ".join(str(results[m]["best_epoch"]) for m in methods) + " |"
    )
    lines.append(
        "| train+eval time (s) | "
        + " | ".join(f"{results[m]['seconds']:.0f}" for m in methods)
        + " |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
