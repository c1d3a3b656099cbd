"""What pruning buys `mtlflow tune`: how soon a pruned search reaches the unpruned one's best.

For each seed, runs `mtlflow tune` on the project's params and splits (run `dvc repro` or
`mtlflow prepare && mtlflow split` first) once with `tune.pruner.name=none`, then once per
pruner configuration, interleaved (unpruned seed s, its pruned runs, then seed s+1), so that
machine load falls on every arm alike. Every arm has the same search space, sampler seed
(`tune.seed`), trial count and per-trial epochs; only the pruner differs. Each run is a fresh
process with a fresh study and a scratch MLflow store, so the project's own are untouched.

With the default sampler, `qmc`, both arms of a seed draw the same values in the same order
(what it draws never depends on earlier scores) and training is deterministic, so a pruned
search reaches the unpruned best by training the same trial; the difference is only what
pruning cut. With `tpe` the arms draw different values once pruned trials enter its model,
and the comparison measures the sampler's luck as much as the pruner.

From each study (trial start/complete times and values) it takes the best-so-far validation
score against the time since the first trial started, and reports when the pruned search
first reached (>=) the unpruned search's best, as a share of the unpruned search's time.
Epochs trained are the load-independent cost. The JSON goes to benchmarks/out/.

    python benchmarks/tune_pruning.py            # seeds 0-2: unpruned and params.yaml's pruner
    python benchmarks/tune_pruning.py --seeds 0 1 2 \\
        --pruner name=median --pruner name=successive_halving,min_resource=1,reduction_factor=3
    python benchmarks/tune_pruning.py --set tune.epochs=8 --pruner name=hyperband
    python benchmarks/tune_pruning.py --report benchmarks/out/tune_pruning.json  # table again
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TIE = 1e-9  # a pruned search that retrains the same values gets the same score


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
    study = optuna.load_study(
        study_name=content["study"], storage=f"sqlite:///{scratch / 'study.db'}"
    )
    trials = [t for t in study.trials if t.state in FINISHED]
    t0 = min(t.datetime_start for t in trials)
    curve, best = [], float("-inf")  # (seconds since the first trial started, best so far)
    for t in sorted(trials, key=lambda t: t.datetime_complete):
        if t.state is TrialState.COMPLETE and t.value > best:
            best = t.value
            curve.append(((t.datetime_complete - t0).total_seconds(), best, t.number))
    return {
        "trials": len(trials),
        "pruned": sum(t.state is TrialState.PRUNED for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best": content["value"],
        "best_trial": content["trial"],
        "search_s": max((t.datetime_complete - t0).total_seconds() for t in trials),
        "process_s": wall,
        "curve": curve,
        "per_trial": [
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value,
                "scores": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
                "start_s": (t.datetime_start - t0).total_seconds(),
                "end_s": (t.datetime_complete - t0).total_seconds(),
                "params": t.params,
            }
            for t in trials
        ],
        "log": done.stdout,
    }


def compare(rows: list[dict]) -> None:
    """Adds to each run when it first reached its seed's unpruned best: seconds since its
    first trial started, the trial, epochs trained by then, and both as % of the unpruned
    search's (the first run of each seed)."""
    reference: dict[int, dict] = {}
    for row in rows:
        ref = reference.setdefault(row["seed"], row)
        hit = next((h for h in row["curve"] if h[1] >= ref["best"] - TIE), None)
        epochs = hit and sum(len(t["scores"]) for t in row["per_trial"] if t["end_s"] <= hit[0])
        draws = {t["trial"]: t["params"] for t in row["per_trial"]}
        ref_draws = {t["trial"]: t["params"] for t in ref["per_trial"]}
        row |= {
            # every trial number both searches ran drew the same values (qmc: always)
            "same_draws": all(ref_draws.get(n, v) == v for n, v in draws.items()),
            "reached_s": hit and hit[0],
            "reached_trial": hit and hit[2],
            "reached_epochs": epochs,
            "reached_pct": hit and 100 * hit[0] / ref["search_s"],
            "reached_epochs_pct": hit and 100 * epochs / ref["epochs"],
        }


def table(rows: list[dict]) -> str:
    lines = [
        "| seed | pruner | trials | pruned | epochs | best val score (trial) | search s "
        "| reached unpruned best: s (trial) | % of unpruned time | epochs by then (%) "
        "| same draws |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        hit = r["reached_s"] is not None
        lines.append(
            f"| {r['seed']} | {r['pruner']} | {r['trials']} | {r['pruned']} | {r['epochs']} | "
            f"{r['best']:.4f} ({r['best_trial']}) | {r['search_s']:.0f} | "
            + (
                f"{r['reached_s']:.0f} ({r['reached_trial']}) | {r['reached_pct']:.0f}% | "
                f"{r['reached_epochs']} ({r['reached_epochs_pct']:.0f}%) |"
                if hit
                else "never | never | never |"
            )
            + f" {'yes' if r['same_draws'] else 'no'} |"
        )
    return "\n".join(lines)


def pruner_overrides(spec: str) -> list[str]:
    """``name=median,n_warmup_epochs=1`` -> ``tune.pruner.name=median``, ..."""
    return [f"tune.pruner.{item.strip()}" for item in spec.split(",") if item.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--pruner",
        dest="pruners",
        action="append",
        default=[],
        help="a pruned arm's tune.pruner settings, comma-separated key=value; repeatable "
        "(default: one arm with params.yaml's pruner)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tune_pruning.json"))
    parser.add_argument("--report", type=Path, help="only print the table of a written JSON")
    parser.add_argument("--verbose", action="store_true", help="print each run's trial lines")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        compare(saved["runs"])
        print(f"{saved['date']}, {saved['cores']} cores; overrides: {saved['overrides']}")
        print(f"loadavg {saved['loadavg']}\n\n{table(saved['runs'])}")
        return
    project = Path.cwd()
    load = {"before": Path("/proc/loadavg").read_text().strip()}
    rows: list[dict] = []
    for seed in args.seeds:
        base = [*args.overrides, f"tune.seed={seed}"]
        arms = [("none", "name=none"), *((p or "params.yaml", p) for p in args.pruners or [""])]
        for label, spec in arms:
            with tempfile.TemporaryDirectory() as tmp:
                row = run([*base, *pruner_overrides(spec)], Path(tmp), project)
            rows.append(row | {"seed": seed, "pruner": label})
            if args.verbose:
                print(row["log"])
            print(
                f"seed {seed} {label}: best {row['best']:.4f} (trial {row['best_trial']}), "
                f"{row['epochs']} epochs, {row['search_s']:.0f} s",
                flush=True,
            )
            load["after"] = Path("/proc/loadavg").read_text().strip()
            write(args.out, rows, args.overrides, load)  # after every run: a stopped one keeps it
    print(f"\n{os.cpu_count()} cores; overrides: {args.overrides or 'none'}; loadavg {load}")
    print(f"written: {args.out}\n\n{table(rows)}")


def write(out: Path, rows: list[dict], overrides: list[str], load: dict[str, str]) -> None:
    compare(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "optuna": optuna.__version__,
        "overrides": overrides,
        "loadavg": load,
        "runs": rows,
    }
    out.write_text(json.dumps(content, indent=1))


if __name__ == "__main__":
    main()
