"""The data stages of a flow run go through DVC, exactly as ``dvc repro`` runs them.

A Prefect flow runs ``dvc repro prepare`` and ``dvc repro split`` in the project, so its
split is the one ``dvc repro`` makes from ``params.yaml``: DVC skips what is up to date, and
``dvc.lock`` records the split's content hash, which the flow then logs to MLflow. The
flow's own params (its params file and overrides) must therefore agree with ``params.yaml`` on
every key the data stages read (``dvc.yaml`` lists them); ``check_data_params`` refuses them
otherwise, before any work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import Params, get_path, load_params, params_dict
from pipelines.errors import ConfigError, MtlflowError
from pipelines.stages import DATA_STAGES

DVC_PARAMS_FILE = "params.yaml"  # what a dvc.yaml `params` entry without a file name reads
OUTPUT_TAIL = 40  # lines of a failed `dvc repro` kept for the error


class DataStageError(MtlflowError):
    """A data stage failed under ``dvc repro``; the message carries the stage's own error."""


class DvcLockedError(RuntimeError):
    """Another DVC process holds the repository lock: transient, worth a retry."""


def data_stage_params(root: Path) -> list[str]:
    """The ``params.yaml`` keys the data stages read, from ``dvc.yaml``."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        raise ConfigError(
            f"{dvc_yaml}: not found; run the flow from the project root (deployments set it "
            "with their set_working_directory pull step)"
        )
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
    keys: list[str] = []
    for name in DATA_STAGES:
        if name not in stages:
            raise ConfigError(f"{dvc_yaml}: no stage '{name}'; the flows reproduce {DATA_STAGES}")
        for entry in stages[name].get("params") or []:
            if isinstance(entry, str):
                keys.append(entry)
            elif isinstance(entry, dict):  # {file: [keys]}: only params.yaml is ours to compare
                keys.extend(entry.get(DVC_PARAMS_FILE) or [])
    return keys


def _value(raw: dict[str, Any], key: str) -> Any:
    try:
        return get_path(raw, key)
    except KeyError:
        return None


def _differences(key: str, ours: Any, theirs: Any) -> list[str]:
    """The leaves under ``key`` where the two values differ, one line each."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [
            line
            for sub in sorted(set(ours) | set(theirs))
            for line in _differences(f"{key}.{sub}", ours.get(sub), theirs.get(sub))
        ]
    if ours == theirs:
        return []
    return [f"  {key}: {theirs!r:.60} in {DVC_PARAMS_FILE}, {ours!r:.60} here"]


def check_data_params(params: Params, root: Path) -> None:
    """Refuse params whose data-stage keys differ from ``params.yaml``'s.

    ``dvc repro`` reads ``params.yaml``; a split made from other values would not be the one
    ``dvc.lock`` records, and a later ``dvc repro`` would silently replace it.
    """
    ours = params_dict(params)
    theirs = params_dict(load_params(root / DVC_PARAMS_FILE))
    differing = [
        line
        for key in data_stage_params(root)
        for line in _differences(key, _value(ours, key), _value(theirs, key))
    ]
    if differing:
        raise ConfigError(
            "these params change what the DVC data stages (prepare, split) read:\n"
            + "\n".join(dict.fromkeys(differing))  # `data` and `data.synthetic.image_size`
            + f"\nThe flows make the split with `dvc repro`, which reads {DVC_PARAMS_FILE}, so "
            f"that dvc.lock versions it: change these keys in {DVC_PARAMS_FILE} (and commit "
            "it) instead of overriding them or using another params file."
        )


def _stage_error(lines: list[str]) -> str | None:
    """The stage's own error from a failed ``dvc repro``: the ``error:`` block the ``mtlflow``
    command printed, without DVC's traceback-free summary after it."""
    for start, line in enumerate(lines):
        if line.startswith("error:"):
            block = [line]
            for follow in lines[start + 1 :]:
                if not follow.startswith((" ", "\t")):
                    break
                block.append(follow)
            return "\n".join(block)
    return None


def run_dvc(args: list[str], root: Path, log: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run ``dvc ARGS`` in ``root``; each output line goes to ``log`` as it comes. Returns the
    exit code and the last lines."""
    venv_bin = str(Path(sys.executable).parent)  # the stage commands are `mtlflow <stage>`
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
    with subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                if line:
                    log(line)
                    tail.append(line)
            return proc.wait(), list(tail)
        finally:
            if proc.poll() is None:  # the flow was cancelled or interrupted
                proc.terminate()
                proc.wait(timeout=30)


def dvc_repro(stage: str, root: Path, log: Callable[[str], None] = print) -> None:
    """``dvc repro STAGE`` in ``root``, each output line passed to ``log``.

    DVC removes a stage's outputs before running it. When the stage fails, its outputs of the
    last successful run (still in ``dvc.lock`` and the cache) are checked out again, so a
    failed flow run leaves the data as it found it. Raises ``DataStageError`` with the stage's
    error, or ``DvcLockedError`` when another DVC process holds the repository.
    """
    code, output = run_dvc(["repro", stage], root, log)
    if code == 0:
        return
    if any("Unable to acquire lock" in line for line in output):
        raise DvcLockedError(f"`dvc repro {stage}`: another DVC process holds {root}")
    detail = _stage_error(output) or "\n".join(output[-10:])
    restored, _ = run_dvc(["checkout", "--quiet", stage], root, log)
    note = (
        f"the outputs of its last successful run are checked out again (dvc checkout {stage})"
        if restored == 0
        else f"`dvc checkout {stage}` found no earlier outputs to restore"
    )
    raise DataStageError(f"`dvc repro {stage}` failed (exit {code}):\n{detail}\n{note}")


def locked_md5(root: Path, stage: str, out: str) -> str:
    """The content hash ``dvc.lock`` records for output ``out`` of ``stage``."""
    lock_file = root / "dvc.lock"
    if not lock_file.is_file():
        raise DataStageError(f"{lock_file}: not found after `dvc repro {stage}`")
    lock = yaml.safe_load(lock_file.read_text()) or {}
    for entry in (lock.get("stages", {}).get(stage) or {}).get("outs") or []:
        if entry.get("path") == out:
            return str(entry["md5"])
    raise DataStageError(f"{lock_file}: stage '{stage}' records no output {out}")
