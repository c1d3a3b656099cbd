"""Trials per minute of `mtlflow tune` with 1 and 2 workers on one PostgreSQL study.

Starts a throwaway PostgreSQL cluster (as the tests do), prepares the default data once in
one project copy per worker (standing in for machines; each copy runs `prepare` and `split`
from the same params, so the splits are identical), then for each worker count runs
`mtlflow tune` in that many copies at once against a fresh study and reports the wall time
and trials per minute. Every other setting is params.yaml's (`--set` overrides apply).

    python benchmarks/tune_workers.py                       # 1 and 2 workers, 8 trials
    python benchmarks/tune_workers.py --workers 1 2 4 --set tune.n_trials=16
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pg_support import create_database, postgres_cluster  # noqa: E402

PROJECT_FILES = ("dvc.yaml", "params.yaml", "pyproject.toml")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def _copy(root: Path, overrides: list[str]) -> Path:
    root.mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, root / name)
    for stage in ("prepare", "split"):
        subprocess.run(
            ["mtlflow", stage, *[a for o in overrides for a in ("--set", o)]],
            cwd=root,
            env=_env(),
            check=True,
            capture_output=True,
        )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "workers")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    copies = [_copy(args.workdir / f"copy{i}", args.overrides) for i in range(max(args.workers))]
    rows = []
    with postgres_cluster() as server:
        for count in args.workers:
            storage = create_database(server, f"optuna_{count}")
            settings = [*args.overrides, f"tune.storage={storage}"]
            start = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [
                        "mtlflow",
                        "tune",
                        *[a for s in settings for a in ("--set", s)],
                        "--set",
                        f"tune.seed={i}",
                        "--set",
                        f"tracking.uri=sqlite:///{copy}/w{count}.db",
                    ],
                    cwd=copy,
                    env=_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for i, copy in enumerate(copies[:count])
            ]
            outputs = [p.communicate()[0] for p in procs]
            seconds = time.perf_counter() - start
            if any(p.returncode for p in procs):
                sys.exit("\n".join(o[-2000:] for o in outputs))
            import optuna

            (name,) = optuna.get_all_study_names(storage)
            trials = optuna.load_study(study_name=name, storage=storage).trials
            finished = sum(t.state.is_finished() and t.state.name != "FAIL" for t in trials)
            rows.append((count, finished, seconds, finished / seconds * 60))
            print(f"{count} worker(s): {finished} trials in {seconds:.0f} s", flush=True)
    print("\n| workers | trials | wall time (s) | trials per minute |")
    print("|---:|---:|---:|---:|")
    for count, finished, seconds, rate in rows:
        print(f"| {count} | {finished} | {seconds:.0f} | {rate:.2f} |")


if __name__ == "__main__":
    main()
