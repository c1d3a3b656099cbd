"""Helpers for tests that run the project's commands in a copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, tiny_params_dict, write_params

PROJECT_FILES = ("dvc.yaml", "MLproject", ".dvcignore", "pyproject.toml")
PROJECT_DIRS = ("mtl_models", "pipelines")


def command_env(**extra: str) -> dict[str, str]:
    """The environment of an activated venv: the project's console scripts on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    # mlflow.set_experiment() in this process exports MLFLOW_EXPERIMENT_ID: never pass it on
    leaks = {f"MLFLOW_{k}" for k in ("TRACKING_URI", "RUN_ID", "EXPERIMENT_ID", "EXPERIMENT_NAME")}
    env = {k: v for k, v in os.environ.items() if k not in leaks}
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["GIT_PYTHON_REFRESH"] = "quiet"
    return env | extra


def run(cmd: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=command_env(**extra_env), capture_output=True, text=True, timeout=600
    )


def copy_project(dest: Path) -> Path:
    """A fresh git + DVC repository holding the project's pipeline files and tiny params."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, dest / name)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    write_params(dest, tiny_params_dict(dest))
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        ["dvc", "config", "core.check_update", "false"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project"],
    ):
        result = run(cmd, dest)
        assert result.returncode == 0, result.stderr
    return dest
