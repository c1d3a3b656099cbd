"""``evaluate``: score the trained model on the test split; write metrics.json and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow

from mtl_models.metrics import summarize
from mtl_models.nn.checkpoint import SPEC_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint
from pipelines import tracking
from pipelines.config import Params
from pipelines.data.splits import load_split, split_digest
from pipelines.errors import MtlflowError
from pipelines.files import ProjectPaths, atomic_write_bytes, read_json, write_json
from pipelines.services import plot_data, plots
from pipelines.services.comparison import (
    compare_with_baselines,
    compare_with_gradient_boosting,
    format_gains,
)
from pipelines.services.diagnosis_report import diagnosis_markdown
from pipelines.services.scoring import format_table, score_split
from pipelines.services.summaries import NOTE_TAG, metrics_markdown


def _optional_report(path: Path) -> dict[str, Any] | None:
    """A report another stage may or may not have written (affinity, baselines)."""
    return json.loads(path.read_text()) if path.is_file() else None


def evaluate(params: Params, paths: ProjectPaths) -> dict[str, Any]:
    """Write ``reports/metrics.json`` (DESIGN.md schema, plus Δm against the single-task
    networks and the gradient-boosted trees of ``mtlflow baselines``), ``reports/diagnosis.md``
    and test plots; log them to the training run."""
    run_info = read_json(paths.run_info, "train")
    try:
        model, spec = load_checkpoint(paths.models_dir / WEIGHTS_FILE, paths.models_dir / SPEC_FILE)
    except CheckpointError as exc:
        raise MtlflowError(f"{exc}; rerun `mtlflow train`") from None
    tasks = list(spec.tasks)
    _, train_labels = load_split(paths, "train", tasks)
    test_inputs, test_labels = load_split(paths, "test", tasks)
    result, per_task = score_split(model, test_inputs, test_labels, train_labels, tasks)
    baselines, digest = _optional_report(paths.baselines_file), split_digest(paths)
    comparison = compare_with_baselines(per_task, baselines, digest)
    boosted = compare_with_gradient_boosting(per_task, baselines, digest)
    metrics = {
        "tasks": per_task,
        "summary": summarize(per_task),
        "baselines": comparison,
        "gradient_boosting": boosted,
    }
    affinity = _optional_report(paths.affinity_file)
    diagnosis = diagnosis_markdown(
        tasks,
        metrics,
        result.labels,
        result.predictions,
        train_labels,
        weighting=run_info.get("weighting", params.train.weighting.method),
        run_id=run_info["run_id"],
        affinity=affinity,
        augmentation=_optional_report(paths.reports_dir / "augmentation.json"),
    )

    write_json(paths.metrics_file, metrics)
    atomic_write_bytes(paths.diagnosis_file, diagnosis.encode())
    confusion_png = paths.plots_dir / "confusion_matrices.png"
    plots.save(plots.confusion_matrices(tasks, result.labels, result.predictions), confusion_png)
    plot_data.write_confusion(tasks, result.labels, result.predictions, paths)

    with tracking.resumed_run(params, run_info["run_id"]):
        flat = {"test/score": metrics["summary"]["mean_score"]}
        flat |= tracking.task_metric_values("test", per_task)
        if "delta_m" in comparison:
            flat["test/delta_m"] = comparison["delta_m"]
            for task, row in comparison["tasks"].items():
                flat[f"test/{task}/single_task_score"] = row["single_task"]
                flat[f"test/{task}/gain"] = row["gain"]
            mlflow.set_tag("mtlflow.baselines_run", comparison["baselines_run_id"])
        if "delta_m" in boosted:
            flat["test/delta_m_gradient_boosting"] = boosted["delta_m"]
            for task, row in boosted["tasks"].items():
                flat[f"test/{task}/gradient_boosting_score"] = row["single_task"]
                flat[f"test/{task}/gain_gradient_boosting"] = row["gain"]
        mlflow.log_metrics(flat)
        # the run's description in the UI: what a runs table cannot show
        mlflow.set_tag(NOTE_TAG, "\n".join(["## Test metrics", "", *metrics_markdown(metrics)]))
        tracking.log_split_dataset(paths.splits_dir / "test.csv", "testing")
        mlflow.log_artifact(str(paths.metrics_file))
        mlflow.log_artifact(str(paths.diagnosis_file))
        mlflow.log_artifact(str(confusion_png), artifact_path="plots")
    print(format_table(metrics))
    print(format_gains(comparison))
    if baselines and baselines.get("enabled"):  # else the line above says how to get both
        print(format_gains(boosted, "gradient-boosted", "Δm against gradient boosting"))
    print(f"evaluate: diagnosis in {paths.diagnosis_file.relative_to(paths.root)}")
    return metrics
