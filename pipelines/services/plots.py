"""Figures people would rather see than read: curves, confusion matrices, augmentation previews."""

from __future__ import annotations

import io
import math
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mtl_models.metrics import confusion
from mtl_models.tasks import TaskSpec
from mtl_models.train.trainer import EpochLog
from pipelines.files import atomic_write_bytes


def learning_curves(history: Sequence[EpochLog]) -> Figure:
    """Training loss per task and validation score per task, by epoch."""
    epochs = [log.epoch for log in history]
    tasks = list(history[0].task_losses)
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(13, 4.8))
    for task in tasks:
        ax_loss.plot(epochs, [log.task_losses[task] for log in history], label=task, lw=1)
        ax_score.plot(epochs, [log.val_metrics[task]["score"] for log in history], label=task, lw=1)
    # The unweighted sum, not the method's objective: comparable across weighting methods and
    # positive (FAMO's or UW's objective can be negative, which a log axis cannot show).
    ax_loss.plot(
        epochs, [sum(log.task_losses.values()) for log in history], "k-", lw=2, label="sum"
    )
    ax_score.plot(epochs, [log.val_score for log in history], "k-", lw=2, label="mean")
    ax_loss.set(title="train loss per task (unweighted)", xlabel="epoch", yscale="log")
    ax_score.set(title="validation score (primary metric)", xlabel="epoch")
    ax_score.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    return fig


def gradient_cosine(history: Sequence[EpochLog]) -> Figure:
    """Heatmaps of the mean pairwise cosine of task gradients: first and last epoch."""
    names = list(history[0].task_losses)
    shown = [history[0], history[-1]] if len(history) > 1 else [history[0]]
    fig, axes = plt.subplots(
        1, len(shown), figsize=(6.8 * len(shown), 6), squeeze=False, layout="constrained"
    )
    for ax, log in zip(axes[0], shown, strict=True):
        matrix = np.asarray(log.gradient_cosine)
        image = ax.imshow(matrix, cmap="RdBu", vmin=-1, vmax=1)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(f"gradient cosine, epoch {log.epoch}")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    return fig


def affinity_heatmap(matrix: np.ndarray, names: Sequence[str], title: str) -> Figure:
    """Lookahead affinity, row = the task whose step is taken, column = the task it affects."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    finite = matrix[np.isfinite(matrix) & ~np.eye(len(names), dtype=bool)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    image = ax.imshow(matrix, cmap="RdBu", vmin=-limit, vmax=limit)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(title=title, xlabel="affected task j", ylabel="stepped task i")
    fig.colorbar(image, ax=ax, shrink=0.8, label="Z(i→j) = 1 − L_j(after) / L_j(before)")
    return fig


def affinity_over_epochs(
    per_epoch: np.ndarray, epochs: Sequence[int], names: Sequence[str]
) -> Figure:
    """One panel per stepped task i: Z(i→j) by epoch for every other task j."""
    n = len(names)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False, sharex=True, layout="constrained"
    )
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        for j in range(n):
            if j != i:
                ax.plot(epochs, per_epoch[:, i, j], lw=1, label=names[j])
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{names[i]} → others", fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=6, ncol=2)
    fig.supxlabel("epoch")
    fig.supylabel("lookahead affinity")
    return fig


def confusion_matrices(
    tasks: Sequence[TaskSpec], labels: np.ndarray, predictions: np.ndarray
) -> Figure:
    """One confusion matrix per discrete task (rows: true, columns: predicted)."""
    discrete = [(t, task) for t, task in enumerate(tasks) if task.is_discrete]
    cols = min(3, max(1, len(discrete)))
    rows = max(1, math.ceil(len(discrete) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(discrete) :]:
        ax.axis("off")
    for ax, (t, task) in zip(axes.flat, discrete, strict=False):
        matrix = confusion(task, labels[:, t], predictions[:, t])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
        ax.set(title=task.name, xlabel="predicted", ylabel="true")
        names = task.class_names if len(task.class_names) == matrix.shape[1] else None
        ax.set_xticks(range(matrix.shape[1]), labels=names, rotation=45 if names else 0)
        ax.set_yticks(range(matrix.shape[0]), labels=names)
    fig.tight_layout()
    return fig


def _label_text(value: float, task: TaskSpec) -> str:
    """A label as a person reads it: its class name where params name the classes."""
    if np.isnan(value):
        return "-"
    if not task.is_discrete:
        return f"{value:.3g}"
    if task.classes is not None and 0 <= int(value) < len(task.classes):
        return task.classes[int(value)]
    return f"{int(value)}"


def augmentation_preview(
    rows: Sequence[Sequence[tuple[np.ndarray, np.ndarray, Sequence[str]]]],
    tasks: Sequence[TaskSpec],
) -> Figure:
    """A grid of samples (rows) and their augmentations (columns), captioned with the labels.

    Each cell is ``(image uint8 [H, W, C], labels [T], transforms that fired)``; the first
    column is the original. A label that a remap moved is printed in red.
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    image_h, line_h = 1.7, 0.11  # inches
    text_h = line_h * (len(tasks) + 5)  # caption below, up to four title lines above
    height = (image_h + text_h) * n_rows + 0.4
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, height), squeeze=False)
    fig.subplots_adjust(
        left=0.02,
        right=0.98,
        top=1 - (0.4 + 0.45) / height,
        bottom=(text_h - 0.45) / height,
        wspace=0.08,
        hspace=text_h / image_h,
    )
    for ax in axes.flat:
        ax.axis("off")
    for r, row in enumerate(rows):
        original = row[0][1]
        for c, (image, labels, fired) in enumerate(row):
            ax = axes[r, c]
            cmap = "gray" if image.shape[-1] == 1 else None
            ax.imshow(image.squeeze(-1) if cmap else image, cmap=cmap, vmin=0, vmax=255)
            title = "original" if c == 0 else (", ".join(fired) or "(none fired)")
            ax.set_title(textwrap.fill(title, 34, max_lines=4), fontsize=5.5)
            for t, task in enumerate(tasks):
                both_missing = np.isnan(labels[t]) and np.isnan(original[t])
                moved = not (labels[t] == original[t] or both_missing)
                ax.text(
                    0.0,
                    -0.03 - t * line_h / image_h,
                    f"{task.name} {_label_text(labels[t], task)}",
                    transform=ax.transAxes,
                    fontsize=5.5,
                    va="top",
                    color="red" if moved else "black",
                    family="monospace",
                )
    fig.suptitle("augmented training samples: labels after remapping (red = moved)", fontsize=9)
    return fig


def log_figure(fig: Figure, artifact_file: str) -> None:
    """Log a figure to the active MLflow run (no local copy) and free it."""
    import mlflow

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def study_plots(study: Any, multi: bool, tasks: Sequence[str]) -> dict[str, Figure]:
    """Optuna's plots of a study, by file stem: optimisation history, parameter importances,
    per-trial validation curves (where pruning cut) and, per-task objectives, the Pareto front.

    A plot the study cannot support yet (importances need two completed trials that differ)
    is left out.
    """
    import optuna
    from optuna.visualization import matplotlib as ovm

    def mean_score(trial: Any) -> float:
        return float(np.mean(trial.values))

    target = {"target": mean_score, "target_name": "mean val score"} if multi else {}
    makers: dict[str, Any] = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, **target),
        # Optuna's default evaluator (PED-ANOVA) reads a custom target as lower-is-better;
        # fANOVA splits the variance of the mean score, whichever way is better.
        "param_importances": lambda: ovm.plot_param_importances(
            study,
            evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0) if multi else None,
            **target,
        ),
    }
    if not multi:
        makers["intermediate_values"] = lambda: ovm.plot_intermediate_values(study)
    elif 2 <= len(tasks) <= 3:
        makers["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=list(tasks))
    else:
        makers["pareto_front"] = lambda: _pareto_scores(study, tasks)
    figures: dict[str, Figure] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="The number of trials is too small")
        for name, make in makers.items():
            try:
                drawn = make()
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # not enough completed trials for this plot yet
            figure = drawn if isinstance(drawn, Figure) else np.ravel(drawn)[0].figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            figures[name] = figure
    return figures


def _pareto_scores(study: Any, tasks: Sequence[str]) -> Figure:
    """More than three objectives: each Pareto-optimal trial as a line of per-task scores."""
    fig, ax = plt.subplots(figsize=(9, 5))
    x = np.arange(len(tasks))
    for trial in study.best_trials:
        ax.plot(x, trial.values, marker="o", lw=1, label=f"trial {trial.number}")
    ax.set_xticks(x, list(tasks), rotation=30, ha="right", fontsize=8)
    ax.set(title="Pareto front: validation score per task", ylabel="val score")
    ax.legend(fontsize=7, ncol=2)
    return fig
