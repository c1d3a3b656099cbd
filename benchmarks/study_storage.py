"""Which Optuna storage serves concurrent local `mtlflow tune` workers: SQLite or a journal file?

Each worker process runs trials of a stand-in objective (six suggestions, a short sleep for
the training) against one shared study; we measure trials per second, the storage overhead
per trial, errors, and whether a worker killed mid-trial leaves its trial marked failed for
the next run (the resume guarantee of `mtlflow tune`).

    python benchmarks/study_storage.py                 # 1, 2 and 4 workers, 40 trials each
    python benchmarks/study_storage.py --trials 100 --work-ms 0
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter("ignore")


def storage(kind: str, where: Path) -> optuna.storages.BaseStorage:
    if kind == "sqlite":
        return RDBStorage(
            f"sqlite:///{where / 'study.db'}",
            engine_kwargs={"connect_args": {"timeout": 60}},
            heartbeat_interval=1,
            grace_period=2,
        )
    return JournalStorage(JournalFileBackend(str(where / "study.log")))


def objective(work_s: float):
    def run(trial: optuna.Trial) -> float:
        x = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.suggest_int("shared_depth", 1, 4)
        trial.suggest_categorical("method", ["equal", "uw", "dwa"])
        trial.suggest_float("dropout", 0.0, 0.3)
        trial.suggest_categorical("batch_size", [32, 64])
        trial.suggest_categorical("head_hidden", [32, 64, 128])
        for step in range(3):  # per-epoch reports, as the pruning callback does
            trial.report(x * step, step)
        time.sleep(work_s)
        return x

    return run


def worker(kind: str, where: str, trials: int, work_s: float, seed: int) -> None:
    study = optuna.load_study(
        study_name="bench",
        storage=storage(kind, Path(where)),
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
    )
    study.optimize(objective(work_s), n_trials=trials)


def measure(kind: str, workers: int, trials: int, work_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        optuna.create_study(study_name="bench", storage=storage(kind, Path(tmp)))
        start = time.perf_counter()
        procs = [
            mp.Process(target=worker, args=(kind, tmp, trials, work_s, seed))
            for seed in range(workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        wall = time.perf_counter() - start
        study = optuna.load_study(study_name="bench", storage=storage(kind, Path(tmp)))
        done = sum(t.state is TrialState.COMPLETE for t in study.trials)
        errors = sum(p.exitcode != 0 for p in procs)
    ideal = trials * work_s  # each worker's own sleeping
    return {
        "trials/s": done / wall,
        "overhead ms/trial": 1000 * max(wall - ideal, 0) * workers / max(done, 1),
        "complete": done,
        "failed workers": errors,
    }


def killed_trial_state(kind: str) -> str:
    """Kill a worker mid-trial, open the study again, run one trial: what is the dead one?"""
    with tempfile.TemporaryDirectory() as tmp:
        optuna.create_study(study_name="bench", storage=storage(kind, Path(tmp)))
        proc = mp.Process(target=worker, args=(kind, tmp, 1, 30.0, 0))
        proc.start()
        study = optuna.load_study(study_name="bench", storage=storage(kind, Path(tmp)))
        while not study.trials:
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        time.sleep(3)  # past the heartbeat grace period
        study = optuna.load_study(study_name="bench", storage=storage(kind, Path(tmp)))
        study.optimize(objective(0.0), n_trials=1)
        return study.trials[0].state.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="per worker")
    parser.add_argument("--work-ms", type=float, default=50.0, help="stand-in training time")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} cores, optuna {optuna.__version__}, {args.trials} trials/worker, "
        f"{args.work_ms:g} ms work/trial\n"
    )
    print("| storage | workers | trials/s | overhead ms/trial | complete | failed workers |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("sqlite", "journal"):
        for n in args.workers:
            r = measure(kind, n, args.trials, args.work_ms / 1000)
            print(
                f"| {kind} | {n} | {r['trials/s']:.1f} | {r['overhead ms/trial']:.1f} | "
                f"{r['complete']} | {r['failed workers']} |"
            )
    print()
    for kind in ("sqlite", "journal"):
        print(
            f"{kind}: trial of a worker killed mid-trial, after the next run: "
            f"{killed_trial_state(kind)}"
        )


if __name__ == "__main__":
    main()
