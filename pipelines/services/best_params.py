"""``reports/best_params.yaml``: what ``tune`` found and ``train`` applies over ``params.yaml``.

Kept apart from the tune stage so ``train`` reads it without importing Optuna.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

import yaml

from pipelines.config import Params, overlay, params_dict
from pipelines.config.params import yaml_problem
from pipelines.errors import ConfigError
from pipelines.files import ProjectPaths, atomic_write_bytes, read_text
from pipelines.redaction import redact_values

HEADER = (
    "# Written by `mtlflow tune` (dvc stage `tune`). `mtlflow train` applies `params` over\n"
    "# params.yaml; a `--set` on the same key wins. Delete this file to train on params.yaml.\n"
)

# Settings that change neither what a trial trains nor how it is scored: editing them keeps
# the study (raising n_trials continues it).
NOT_IN_STUDY = {
    "tune": ("enabled", "n_trials", "storage", "study_name", "heartbeat_seconds", "seed"),
    # trials measure no affinity, and are not checkpointed
    "train": ("epochs", "device", "num_workers", "affinity", "resume"),
}


def study_name(params: Params) -> str:
    """``tune.study_name``, or a name derived from every setting a trial's result depends on,
    so a changed search space or model starts a new study in the same storage."""
    if params.tune.study_name:
        return params.tune.study_name
    raw = params_dict(params)
    for section in ("register", "tracking", "baselines"):
        raw.pop(section, None)
    for section, keys in NOT_IN_STUDY.items():
        for key in keys:
            raw[section].pop(key, None)
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    return f"mtlflow-{digest[:10]}"


def write_best_params(paths: ProjectPaths, content: dict[str, Any]) -> None:
    body = yaml.safe_dump(redact_values(content), sort_keys=False, default_flow_style=False)
    atomic_write_bytes(paths.best_params, (HEADER + body).encode())


def read_best_params(paths: ProjectPaths) -> dict[str, Any] | None:
    path = paths.best_params
    if not path.is_file():
        return None
    try:
        content = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path}: not valid YAML {yaml_problem(exc)}; rerun `mtlflow tune`"
        ) from None
    if not isinstance(content, dict) or not isinstance(content.get("params", {}), dict):
        raise ConfigError(f"{path}: expected a mapping with a `params` mapping; rerun tune")
    return content


def _overlaps(tuned: str, given: str) -> bool:
    """A ``--set`` key wins over a tuned key on the same path, above or below it. The
    weighting is one unit: a tuned method would drop the hyperparameters the user set."""
    a, b = tuned.split("."), given.split(".")
    if a[: len(b)] == b or b[: len(a)] == a:
        return True
    return tuned.startswith("train.weighting.") and given.startswith("train.weighting")


def apply_best_params(
    params: Params, paths: ProjectPaths, overridden: Collection[str] = ()
) -> tuple[Params, dict[str, Any] | None]:
    """``params`` with the tuned values on top, and the file's content when any were applied.

    Only keys still in ``tune.search_space`` apply, and the ``overridden`` keys (given with
    ``--set``) keep the user's value (see ``_overlaps``). Nothing applies when
    ``tune.enabled`` is false.
    """
    content = read_best_params(paths)
    if not params.tune.enabled or not content or not content.get("params"):
        return params, None
    space = params.tune.search_space
    values = {
        key: value
        for key, value in content["params"].items()
        if key in space and not any(_overlaps(key, given) for given in overridden)
    }
    if not values:
        return params, None
    tuned = overlay(params, values, source=str(paths.best_params))
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    print(
        f"train: tuned params from {paths.best_params} "
        f"(study {content.get('study')}, trial {content.get('trial')}): {shown}"
    )
    return tuned, content
