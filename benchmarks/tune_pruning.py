"""What pruning buys `mtlflow tune`: wall time and trials-to-best with and without it.

Runs the tune stage of params.yaml twice on the project's splits (run `dvc repro` or
`mtlflow prepare && mtlflow split` first), with the same sampler seed and trial count: once
with the configured pruner, once with `tune.pruner.name=none`. Each run gets a fresh study
and a scratch MLflow store, so the project's own are untouched.

    python benchmarks/tune_pruning.py
    python benchmarks/tune_pruning.py --set tune.n_trials=12 \
        --set tune.pruner.name=successive_halving
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from pipelines import runtime
from pipelines.best_params import study_name
from pipelines.config import load_params
from pipelines.files import ProjectPaths
from pipelines.stages.tune import tune


def run(overrides: list[str], scratch: Path, project: Path) -> dict[str, object]:
    os.chdir(scratch)  # MLflow's artifacts land in the scratch directory too
    params = load_params(
        project / "params.yaml",
        [
            *overrides,
            f"tune.storage=sqlite:///{scratch / 'study.db'}",
            f"tracking.uri=sqlite:///{scratch / 'mlflow.db'}",
        ],
    )
    paths = ProjectPaths(scratch)
    (scratch / "data").symlink_to(project / "data")  # the project's splits
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        content = tune(params, paths)
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=study_name(params), storage=params.tune.storage)
    trials = study.trials
    return {
        "pruner": params.tune.pruner.name,
        "trials": len(trials),
        "pruned": sum(t.state is TrialState.PRUNED for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best": content["value"],
        "best trial": content["trial"],
        "wall s": wall,
        "log": out.getvalue(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--verbose", action="store_true", help="print each run's trial lines")
    args = parser.parse_args()
    runtime.quiet_environment()
    runtime.keep_freed_memory()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    rows = []
    for extra in ([], ["tune.pruner.name=none"]):
        project = Path.cwd()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                row = run([*args.overrides, *extra], Path(tmp), project)
            finally:
                os.chdir(project)
        rows.append(row)
        if args.verbose:
            print(row["log"])
    print(f"{os.cpu_count()} cores; overrides: {args.overrides or 'none'}\n")
    print(
        "| pruner | trials | pruned | epochs trained | best mean val score | best trial | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['pruner']} | {r['trials']} | {r['pruned']} | {r['epochs']} | "
            f"{r['best']:.4f} | {r['best trial']} | {r['wall s']:.0f} |"
        )


if __name__ == "__main__":
    main()
