"""``evaluate``: score the trained model on the test split; write metrics.json and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from mtl_models.metrics import majority_labels, summarize
from mtl_models.nn.model import SPEC_FILE, WEIGHTS_FILE, MultiTaskModel, load_checkpoint
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import MultiTaskDataset, make_loader
from mtl_models.train.trainer import Predictions, predict, score_predictions
from pipelines import tracking
from pipelines.config import Params
from pipelines.files import ProjectPaths, atomic_write_bytes, read_json, write_json
from pipelines.services import plots
from pipelines.services.diagnosis import compare_with_baselines, diagnosis_markdown, format_gains
from pipelines.stages.split import Inputs, load_split, split_digest

# majority_accuracy sits beside the score because a constant predictor's QWK is 0 by
# definition: accuracy shows whether a skewed ordinal task really beats "always the mode".
TABLE_COLUMNS = ("kind", "score", "majority_baseline", "accuracy", "majority_accuracy", "collapsed")


def format_table(metrics: dict[str, Any]) -> str:
    """Per-task test metrics as a fixed-width text table."""
    per_task = metrics["tasks"]
    extra = sorted({k for m in per_task.values() for k in m} - set(TABLE_COLUMNS) - {"n"})
    header = ["task", *TABLE_COLUMNS, *extra]
    rows = []
    for name, m in per_task.items():
        cells = [name]
        for key in header[1:]:
            value = m.get(key, "")
            cells.append(f"{value:.3f}" if isinstance(value, float) else str(value).lower())
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    summary = metrics["summary"]
    lines.append(
        f"mean score {summary['mean_score']:.3f}; "
        f"{len(summary['tasks_beating_majority'])}/{len(per_task)} tasks beat their majority "
        "baseline; "
        f"collapsed: {', '.join(summary['collapsed_tasks']) or 'none'}"
    )
    return "\n".join(lines)


def score_split(
    model: MultiTaskModel,
    inputs: Inputs,
    labels: np.ndarray,
    train_labels: np.ndarray,
    tasks: list[TaskSpec],
) -> tuple[Predictions, dict[str, dict[str, Any]]]:
    """Predict a split and score each task against its majority baseline (the training
    split's mode or mean)."""
    loader = make_loader(MultiTaskDataset(inputs, labels), 256, shuffle=False)
    result = predict(model, loader, next(model.parameters()).device)
    return result, score_predictions(model, result, majority_labels(train_labels, tasks))


def _optional_report(path: Path) -> dict[str, Any] | None:
    """A report another stage may or may not have written (affinity, baselines)."""
    return json.loads(path.read_text()) if path.is_file() else None


def evaluate(params: Params, paths: ProjectPaths) -> dict[str, Any]:
    """Write ``reports/metrics.json`` (DESIGN.md schema, plus Δm against single-task
    baselines), ``reports/diagnosis.md`` and test plots; log them to the training run."""
    run_info = read_json(paths.run_info, "train")
    model, spec = load_checkpoint(paths.models_dir / WEIGHTS_FILE, paths.models_dir / SPEC_FILE)
    tasks = list(spec.tasks)
    _, train_labels = load_split(paths, "train", tasks)
    test_inputs, test_labels = load_split(paths, "test", tasks)
    result, per_task = score_split(model, test_inputs, test_labels, train_labels, tasks)
    comparison = compare_with_baselines(
        per_task, _optional_report(paths.baselines_file), split_digest(paths)
    )
    metrics = {"tasks": per_task, "summary": summarize(per_task), "baselines": comparison}
    affinity = _optional_report(paths.affinity_file)
    diagnosis = diagnosis_markdown(
        tasks,
        metrics,
        result.labels,
        result.predictions,
        train_labels,
        weighting=_trained_weighting(run_info, params),
        run_id=run_info["run_id"],
        affinity=affinity,
    )

    write_json(paths.metrics_file, metrics)
    atomic_write_bytes(paths.diagnosis_file, diagnosis.encode())
    confusion_png = paths.plots_dir / "confusion_matrices.png"
    plots.save(plots.confusion_matrices(tasks, result.labels, result.predictions), confusion_png)

    with tracking.resumed_run(params, run_info["run_id"]):
        flat = {"test/score": metrics["summary"]["mean_score"]}
        flat |= tracking.task_metric_values("test", per_task)
        if "delta_m" in comparison:
            flat["test/delta_m"] = comparison["delta_m"]
            for task, row in comparison["tasks"].items():
                flat[f"test/{task}/single_task_score"] = row["single_task"]
                flat[f"test/{task}/gain"] = row["gain"]
            mlflow.set_tag("mtlflow.baselines_run", comparison["baselines_run_id"])
        mlflow.log_metrics(flat)
        tracking.log_split_dataset(paths.splits_dir / "test.csv", "testing")
        mlflow.log_artifact(str(paths.metrics_file))
        mlflow.log_artifact(str(paths.diagnosis_file))
        mlflow.log_artifact(str(confusion_png), artifact_path="plots")
    print(format_table(metrics))
    print(format_gains(comparison))
    print(f"evaluate: diagnosis in {paths.diagnosis_file.relative_to(paths.root)}")
    return metrics


def _trained_weighting(run_info: dict[str, Any], params: Params) -> str:
    """The weighting the model was trained with: the run's param (a tuned method may differ
    from params.yaml's)."""
    run = mlflow.MlflowClient(tracking.configure(params)).get_run(run_info["run_id"])
    return run.data.params.get("train.weighting.method", params.train.weighting.method)
