"""What pruning buys `mtlflow tune`: wall time and trials-to-best with and without it.

Runs `mtlflow tune` twice on the project's params and splits (run `dvc repro` or
`mtlflow prepare && mtlflow split` first), with the same sampler seed and trial count: once
with the configured pruner, once with `tune.pruner.name=none`. Each run is a fresh process
with a fresh study and a scratch MLflow store, so the project's own are untouched.

    python benchmarks/tune_pruning.py
    python benchmarks/tune_pruning.py --set tune.n_trials=12 \
        --set tune.pruner.name=successive_halving
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState


def run(overrides: list[str], scratch: Path, project: Path) -> dict[str, object]:
    """One `mtlflow tune` process in ``scratch``, reading the project's params and splits."""
    (scratch / "data").symlink_to(project / "data")
    settings = [
        *overrides,
        f"tune.storage=sqlite:///{scratch / 'study.db'}",
        f"tracking.uri=sqlite:///{scratch / 'mlflow.db'}",
    ]
    mtlflow = shutil.which("mtlflow") or str(Path(sys.executable).parent / "mtlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    start = time.perf_counter()
    done = subprocess.run(
        [mtlflow, "tune", "--params", str(project / "params.yaml")]
        + [a for s in settings for a in ("--set", s)],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    content = yaml.safe_load((scratch / "reports" / "best_params.yaml").read_text())
    storage = f"sqlite:///{scratch / 'study.db'}"
    study = optuna.load_study(study_name=content["study"], storage=storage)
    named = [s.split("=", 1)[1] for s in overrides if s.startswith("tune.pruner.name=")]
    return {
        "pruner": named[-1] if named else "median (params.yaml)",
        "trials": len(study.trials),
        "pruned": sum(t.state is TrialState.PRUNED for t in study.trials),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
        "best": content["value"],
        "best trial": content["trial"],
        "wall s": wall,
        "log": done.stdout,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--verbose", action="store_true", help="print each run's trial lines")
    args = parser.parse_args()
    project = Path.cwd()
    rows = []
    for extra in ([], ["tune.pruner.name=none"]):
        with tempfile.TemporaryDirectory() as tmp:
            row = run([*args.overrides, *extra], Path(tmp), project)
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
