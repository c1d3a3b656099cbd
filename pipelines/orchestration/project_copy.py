"""Which project copy a deployment's flow run works in, and the data it trains on there.

``prefect deploy`` runs the build step ``pin_project`` in the project it deploys from and
records that directory, its git commit and the git hash of its ``dvc.lock``. Each flow run then
starts with the pull step ``enter_project``:

- a worker started with ``MTLFLOW_PROJECT_DIR=/path/to/copy`` (its own clone of the project,
  on its own machine) runs the flow in that copy. The copy must be at the recorded commit
  with the same ``dvc.lock``, and its prepared data and split come from the DVC remote
  (``dvc pull prepare split``), so every worker trains on the split ``dvc.lock`` versions;
- a worker without it runs the flow in the directory the deployment was made from, as
  ``dvc repro`` would there.

Both steps are plain functions that Prefect imports by their dotted names in ``prefect.yaml``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from pipelines.errors import MtlflowError

PROJECT_DIR_ENV = "MTLFLOW_PROJECT_DIR"
PULLED_STAGES = ("prepare", "split")  # their outputs: data/raw, data/splits
PINNED_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")  # what decides the data and the run


def _say(message: str) -> None:
    """To the flow run's logs (the Prefect UI) when in one, else to stdout (``prefect
    deploy``). Pull steps run before the flow, outside its logging context."""
    from prefect.runtime import flow_run

    if flow_run.id:
        from prefect.logging.loggers import flow_run_logger

        flow_run_logger(flow_run_id=UUID(flow_run.id)).info(message)
    else:
        print(message)


def _git(root: Path, *args: str) -> str | None:
    """``git ARGS`` in ``root``: its output, or None where git fails (no repository)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=60
        )
    except OSError:  # no git on this machine
        return None
    return done.stdout.rstrip() if done.returncode == 0 else None


def _changed(root: Path) -> str:
    """The pinned files with changes git has not committed, comma-separated ("" if none)."""
    status = _git(root, "status", "--porcelain", "--", *PINNED_FILES) or ""
    return ", ".join(line[3:] for line in status.splitlines())


def _lock_hash(root: Path) -> str:
    """Git's hash of ``dvc.lock`` as it is on disk ("" without one)."""
    return (_git(root, "hash-object", "dvc.lock") or "") if (root / "dvc.lock").is_file() else ""


def pin_project(directory: str | None = None) -> dict[str, str]:
    """Build step: the project being deployed, its commit and its ``dvc.lock``'s git hash.

    Commit and hash are empty outside git (workers in other copies then refuse to run). A
    change to ``dvc.yaml``, ``dvc.lock`` or ``params.yaml`` that is not committed is named:
    the flow runs in other copies would not see it.
    """
    root = Path(directory or Path.cwd()).resolve()
    commit = _git(root, "rev-parse", "HEAD") or ""
    names = _changed(root) if commit else ""
    if names:
        _say(
            f"deploy: {names} not committed: workers in other project copies run commit "
            f"{commit[:12]}, without these changes; commit them and deploy again"
        )
    return {"directory": str(root), "commit": commit, "dvc_lock": _lock_hash(root)}


def _check_copy(root: Path, where: str, deployed: Path, commit: str, dvc_lock: str) -> None:
    """The copy holds the deployed commit and ``dvc.lock``, or a one-line error saying how to
    get there."""
    if not commit:
        raise MtlflowError(
            f"{where}: the deployment was made in {deployed}, which is not a git repository, "
            "so another copy cannot be matched to it; deploy from a git clone"
        )
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        raise MtlflowError(
            f"{where}: not a git clone of the project; clone it and check out {commit[:12]}"
        )
    if head != commit:
        raise MtlflowError(
            f"{where}: at commit {head[:12]}, but the deployment runs {commit[:12]}; "
            f"`git -C {root} fetch && git -C {root} checkout {commit}`, or deploy again"
        )
    names = _changed(root)
    if names:
        raise MtlflowError(
            f"{where}: {names} changed since commit {commit[:12]}; `git -C {root} checkout "
            f"-- {' '.join(PINNED_FILES)}` to run what was deployed"
        )
    if dvc_lock and _lock_hash(root) != dvc_lock:
        raise MtlflowError(
            f"{where}: dvc.lock differs from the one deployed from {deployed} (not committed "
            "there?); commit it there, `git pull` here, and deploy again"
        )


def pull_data(root: Path, where: str) -> None:
    """``dvc pull`` of the data stages' outputs that ``dvc.lock`` records, from the default
    remote; a one-line error when it cannot (no remote, the split never pushed)."""
    from pipelines.orchestration.dvc import run_dvc

    _say(f"{where}: dvc pull {' '.join(PULLED_STAGES)}")
    code, output = run_dvc(["pull", *PULLED_STAGES], root, log=_say)
    if code != 0:
        reason = next((line for line in reversed(output) if "ERROR" in line), None)
        reason = reason or (output[-1] if output else f"exit {code}")
        raise MtlflowError(
            f"{where}: `dvc pull {' '.join(PULLED_STAGES)}` failed: {reason.strip()}; the "
            "copy needs the DVC remote the deploying project pushed its data to "
            "(`dvc remote add -d ...` committed there, then `dvc push`)"
        )


def enter_project(directory: str, commit: str = "", dvc_lock: str = "") -> dict[str, str]:
    """Pull step: choose the project copy, check it and pull its data; Prefect then runs the
    flow in the returned ``directory``."""
    deployed = Path(directory).resolve()
    chosen = os.environ.get(PROJECT_DIR_ENV, "").strip()
    where = f"{PROJECT_DIR_ENV}={chosen}" if chosen else f"{deployed} (where it was deployed from)"
    if chosen and not Path(chosen).expanduser().is_absolute():  # flow runs start in a temp dir
        raise MtlflowError(
            f"{where}: not an absolute path; set it to the full path of the worker's clone "
            f"(`{PROJECT_DIR_ENV}=$PWD prefect worker start ...` in the clone)"
        )
    root = Path(chosen).expanduser().resolve() if chosen else deployed
    if not (root / "dvc.yaml").is_file():
        raise MtlflowError(
            f"{where}: no dvc.yaml there; point {PROJECT_DIR_ENV} at this worker's clone of "
            "the project before `prefect worker start`"
        )
    if root != deployed:
        _check_copy(root, where, deployed, commit, dvc_lock)
        pull_data(root, where)
    _say(f"project: {root} (commit {commit[:12] or 'none'})")
    return {"directory": str(root)}


@contextmanager
def project_lock(root: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Flow runs working in one project copy share its ``data/``, ``models/`` and
    ``reports/``: one at a time. A second one waits, saying so; a killed holder's lock goes
    with its process."""
    from filelock import FileLock, Timeout

    from pipelines.files import ProjectPaths

    path = ProjectPaths(root).flow_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"{root}: another flow run is working in this project copy; waiting for it to end")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
