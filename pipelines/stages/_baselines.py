"""``baselines``: one single-task model per task, on the same backbone, budget and split, and
for tables one gradient-boosted model per task on the same split.

``evaluate`` compares the multi-task model with each (Δm and a per-task gain, in
``reports/metrics.json``): whether sharing one network helps each task or costs it, and whether
a network beats the usual tool for tables at all.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import mlflow
import numpy as np

from pipelines import tracking
from pipelines.config import Params
from pipelines.data.splits import SPLITS, load_input_specs, load_split, split_digest
from pipelines.files import ProjectPaths, write_json
from pipelines.services.augmentation import resolve_augmentation
from pipelines.services.baselines import fit_single_task, single_task_params
from pipelines.services.best_params import apply_best_params
from pipelines.services.fitting import check_backbone
from pipelines.services.gradient_boosting import gradient_boosting_baselines


def baselines(
    params: Params,
    paths: ProjectPaths,
    overridden: Collection[str] = (),
    project_run: str | None = None,
) -> dict[str, Any]:
    """Train a single-task model per task (and, for tables, a gradient-boosted one) and write
    ``reports/baselines.json``.

    With ``baselines.enabled: false`` it writes a note instead (DVC always finds its output),
    so the default ``dvc repro`` does not pay for one training per task.
    """
    if not params.baselines.enabled:
        note = (
            "baselines.enabled is false; `mtlflow baselines --set baselines.enabled=true` "
            "or `dvc exp run -S baselines.enabled=true` trains them"
        )
        report: dict[str, Any] = {"enabled": False, "note": note}
        write_json(paths.baselines_file, report)
        print(f"baselines: skipped ({note})")
        return report

    params, tuned = apply_best_params(params, paths, overridden)
    tasks = params.task_specs()
    splits = {name: load_split(paths, name, tasks) for name in SPLITS}
    input_specs = load_input_specs(paths)
    # every task's params and augmentation resolve before the first model trains
    singles = {t.name: single_task_params(params, t.name) for t in tasks}
    policies = {name: resolve_augmentation(p) for name, p in singles.items()}
    shared_excluded = {d.name for d in resolve_augmentation(params).excluded}
    check_backbone(params, input_specs)

    digest = split_digest(paths)
    results: dict[str, dict[str, Any]] = {}
    with tracking.training_run(
        params, paths.root, "baselines", join=False, project_run=project_run
    ) as parent:
        mlflow.set_tags({"mtlflow.stage": "baselines", "data.split_sha256": digest})
        if tuned is not None:
            mlflow.set_tags({"optuna.study": tuned["study"], "optuna.trial": tuned["trial"]})
        # first: seconds per task, and the bar the networks below have to clear
        boosted = gradient_boosting_baselines(
            params, splits, input_specs, parent.info.experiment_id
        )
        for t, task in enumerate(tasks):
            single, policy = singles[task.name], policies[task.name]
            dropped = [d.name for d in policy.excluded if d.name not in shared_excluded]
            without = f"; without {', '.join(dropped)} (moves its label)" if dropped else ""
            print(
                f"baselines: [{t + 1}/{len(tasks)}] {task.name} alone, "
                f"{single.train.epochs} epochs{without}"
            )
            results[task.name] = fit_single_task(
                single, t, splits, policy, input_specs, parent.info.experiment_id
            )
            done = results[task.name]
            print(
                f"baselines: {task.name} test {task.primary_metric} {done['score']:.4f} "
                f"(best val epoch {done['best_epoch']}, {done['seconds']}s)"
            )
        mlflow.log_metrics(
            {f"baseline/{name}/score": r["score"] for name, r in results.items()}
            | {"baseline/mean_score": float(np.nanmean([r["score"] for r in results.values()]))}
            | {
                f"gradient_boosting/{name}/score": r["score"]
                for name, r in boosted.get("tasks", {}).items()
            }
        )
        report = {
            "enabled": True,
            "split_sha256": digest,
            "epochs": params.train.epochs,
            "tuned_trial": tuned["trial"] if tuned is not None else None,
            "mlflow_run_id": parent.info.run_id,
            "tasks": results,
            "gradient_boosting": boosted,
        }
        write_json(paths.baselines_file, report)
        mlflow.log_artifact(str(paths.baselines_file))
    print(
        "baselines: written to reports/baselines.json; `mtlflow evaluate` compares the "
        "multi-task model with them (Δm)"
    )
    return report
