"""Pipeline stages: plain functions (params + paths in, files out), and the one table of
them that drives the CLI verbs, the MLproject entry points and the Prefect pipeline flow."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One stage as every entry point sees it.

    ``in_pipeline``: part of ``mtlflow run``, ``dvc repro`` and the ``mtl-pipeline`` flow, in
    table order. ``data``: a data stage, which Prefect flows run through ``dvc repro`` so
    ``dvc.lock`` versions its output. ``takes_overrides``: receives the ``--set`` keys, which
    win over tuned values. ``mlproject_sets``: overrides its MLproject entry point adds.
    ``reads_splits``: reads ``data/splits``, which must have been made with these params.
    """

    name: str
    help: str
    in_pipeline: bool = True
    data: bool = False
    takes_overrides: bool = False
    mlproject_sets: tuple[str, ...] = ()
    reads_splits: bool = False

    @property
    def run(self) -> Callable[..., Any]:
        """The stage function, ``<name>`` of ``pipelines/stages/_<name>.py`` (imported on
        first use, so the CLI starts without loading torch, MLflow and Optuna)."""
        return getattr(importlib.import_module(f"{__name__}._{self.name}"), self.name)

    def call(self, params: Any, paths: Any, overridden: frozenset[str] = frozenset()) -> Any:
        """Run the stage; the ``--set`` keys reach the stages that apply tuned values. A
        stage that reads the splits first checks they were made with these params."""
        if self.reads_splits:
            from pipelines.data.splits import check_split_current

            check_split_current(params, paths)
        if self.takes_overrides:
            return self.run(params, paths, overridden)
        return self.run(params, paths)


STAGES: tuple[Stage, ...] = (
    Stage(
        "prepare",
        "Generate the built-in data.source (defect images by default) into data/raw/.",
        data=True,
    ),
    Stage(
        "split",
        "Check the data, decode its inputs once and write stratified splits to data/splits/.",
        data=True,
    ),
    Stage(
        "augment",
        "Show which augmentations every task's label survives; write the report and a preview.",
        in_pipeline=False,
        reads_splits=True,
    ),
    Stage(
        "tune",
        "Search tune.search_space with Optuna (resumable); write reports/best_params.yaml.",
        reads_splits=True,
    ),
    Stage(
        "baselines",
        "Train one single-task model per task (same backbone, budget, split), and for tables "
        "one gradient-boosted model per task, for Δm; needs baselines.enabled "
        "(`--set baselines.enabled=true`).",
        takes_overrides=True,
        mlproject_sets=("baselines.enabled=true",),
        reads_splits=True,
    ),
    Stage(
        "train",
        "Train (with reports/best_params.yaml over params); write models/ and an MLflow run.\n\n"
        "Data-parallel under torchrun: `torchrun --nproc_per_node N -m pipelines.cli train`.",
        takes_overrides=True,
        reads_splits=True,  # not evaluate: it scores the model on the split it trained on
    ),
    Stage(
        "evaluate",
        "Score the model on the test split; write reports/metrics.json and plots.",
    ),
    Stage(
        "register",
        "Register the model; move the alias only if its mean test score beats the champion's.",
    ),
)
PIPELINE: tuple[str, ...] = tuple(s.name for s in STAGES if s.in_pipeline)
DATA_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.data)


def stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage '{name}'; stages: {', '.join(s.name for s in STAGES)}")


def __getattr__(name: str) -> Callable[..., Any]:
    """``stages.train`` etc.: the stage functions, imported when first asked for."""
    if any(s.name == name for s in STAGES):
        return stage(name).run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATA_STAGES",
    "PIPELINE",
    "STAGES",
    "Stage",
    "augment",
    "baselines",
    "evaluate",
    "prepare",
    "register",
    "split",
    "stage",
    "train",
    "tune",
]
