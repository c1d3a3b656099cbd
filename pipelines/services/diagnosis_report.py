"""``reports/diagnosis.md``: the findings of :mod:`pipelines.services.diagnosis` and each
task's numbers (confusion, class shares, baseline gain) as markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtl_models.metrics import COLLAPSE_SHARE, confusion
from mtl_models.tasks import TaskSpec
from pipelines.services.diagnosis import NEGATIVE_TRANSFER, _pct, find_issues


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(str(h) for h in header) + " |"]
    out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.3f}"
    return str(value)


def _task_section(
    task: TaskSpec, m: Mapping[str, Any], y: np.ndarray, p: np.ndarray, train_y: np.ndarray
) -> list[str]:
    lines = [
        "",
        f"### {task.name}",
        "",
        f"{task.kind}, {len(y)} labelled test samples; {task.primary_metric} "
        f"{_fmt(m['score'])} (majority baseline {_fmt(m['majority_baseline'])}); "
        f"collapsed: {_fmt(bool(m['collapsed']))}.",
        "",
    ]
    if not len(y):
        return lines
    if task.is_discrete:
        assert task.n_classes is not None
        k = task.n_classes
        counts = {
            "labels, train": np.bincount(train_y.astype(int), minlength=k),
            "labels, test": np.bincount(y.astype(int), minlength=k),
            "predictions, test": np.bincount(p.astype(int), minlength=k),
        }
        rows = [
            [name, *(f"{c} ({_pct(c / max(v.sum(), 1))})" for c in v)] for name, v in counts.items()
        ]
        names = task.class_names
        lines += _md_table(["class", *names], rows)
        lines += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
        matrix = confusion(task, y, p)
        lines += _md_table(
            ["true \\ pred", *names], [[names[i], *row] for i, row in enumerate(matrix)]
        )
    else:
        columns = (("labels, train", train_y), ("labels, test", y), ("predictions, test", p))
        rows = [
            [name, *(f"{q:.4g}" for q in (v.mean(), v.std(), *np.percentile(v, [5, 50, 95])))]
            if len(v)
            else [name, *["n/a"] * 5]
            for name, v in columns
        ]
        lines += _md_table(["", "mean", "std", "p5", "median", "p95"], rows)
    return lines


def _boosted_lines(block: Mapping[str, Any]) -> list[str]:
    """Δm against the gradient-boosted trees, with each task's gain, when it was computed."""
    if "delta_m" not in block:
        return []
    gains = ", ".join(f"{task} {row['gain']:+.1%}" for task, row in block["tasks"].items())
    return [
        "",
        f"**Δm = {block['delta_m']:+.2%}** against gradient-boosted trees (scikit-learn's "
        f"`HistGradientBoosting*`, one per task, same split; negative: the trees do better): "
        f"{gains}.",
    ]


def _audit_lines(augmentation: Mapping[str, Any] | None) -> list[str]:
    """What the label audit of the augmentation found, or why it did not run."""
    if not augmentation or not augmentation.get("enabled"):
        return []
    audit = augmentation.get("audit") or {}
    if "transforms" not in audit:
        return ["", f"Label audit of the augmentation: {audit.get('note', 'not run')}."]
    flagged = audit["flagged"]
    return [
        "",
        f"Label audit of the augmentation ({audit['probe']}; {audit['criterion']}): "
        f"{len(audit['transforms'])} kept transforms audited, "
        + (f"flagged: {', '.join(flagged)}." if flagged else "none flagged."),
    ]


def diagnosis_markdown(
    tasks: Sequence[TaskSpec],
    metrics: Mapping[str, Any],
    labels: np.ndarray,
    predictions: np.ndarray,
    train_labels: np.ndarray,
    weighting: str,
    run_id: str,
    affinity: Mapping[str, Any] | None = None,
    augmentation: Mapping[str, Any] | None = None,
) -> str:
    """``reports/diagnosis.md``: summary table, suggestions, then per-task distributions;
    ``augmentation``: ``reports/augmentation.json``, whose label audit it reports."""
    per_task = metrics["tasks"]
    comparison = metrics.get("baselines") or {}
    gains = comparison.get("tasks", {})
    findings = find_issues(
        tasks,
        per_task,
        labels,
        predictions,
        train_labels,
        weighting,
        affinity,
        comparison,
        augmentation,
    )
    summary = metrics["summary"]
    lines = [
        f"# Diagnosis: {len(tasks)} tasks, mean test score {summary['mean_score']:.3f}",
        "",
        f"MLflow run `{run_id}`, weighting `{weighting}`. "
        f"{len(summary['tasks_beating_majority'])}/{len(tasks)} tasks beat their majority "
        f"baseline; collapsed: {', '.join(summary['collapsed_tasks']) or 'none'} "
        f"(a task collapses when one class takes ≥{COLLAPSE_SHARE:.0%} of its predictions "
        "while its labels are spread out).",
        "",
    ]
    rows = []
    for task in tasks:
        m = per_task[task.name]
        gain = gains.get(task.name)
        excluded = comparison.get("excluded", {}).get(task.name)
        single = gain or excluded
        rows.append(
            [
                task.name,
                task.kind,
                task.primary_metric,
                _fmt(float(m["score"])),
                _fmt(float(m["majority_baseline"])),
                _fmt(bool(m["collapsed"])),
                _fmt(single["single_task"]) if single else "",
                f"{gain['gain']:+.1%}" if gain else "n/a" if excluded else "",
            ]
        )
    lines += _md_table(
        ["task", "kind", "metric", "score", "majority", "collapsed", "single-task", "gain"], rows
    )
    lines.append("")
    if "delta_m" in comparison:
        lines.append(
            f"**Δm = {comparison['delta_m']:+.2%}** against single-task models with the same "
            f"backbone, budget and split (positive: the multi-task model is better on average)."
        )
    else:
        lines.append(f"Δm: {comparison.get('note', 'not computed')}.")
    lines += _boosted_lines(metrics.get("gradient_boosting") or {})
    if affinity and affinity.get("enabled"):
        groups = " | ".join(", ".join(g) for g in affinity["grouping"]["groups"])
        lines.append("")
        lines.append(
            f"Task groups by lookahead affinity (at most {affinity['grouping']['max_groups']}): "
            f"{groups}."
        )
    lines += _audit_lines(augmentation)
    lines += ["", "## Suggestions", ""]
    if findings:
        lines += [f"- **{f.task}** {f.text}" for f in findings]
    else:
        lines.append(
            "None: every task beats its majority baseline, none collapsed, none lags the others"
            + (
                f" or loses more than {-NEGATIVE_TRANSFER:.0%} to its single-task model."
                if gains
                else "."
            )
        )
    lines += ["", "## Per task"]
    for t, task in enumerate(tasks):
        present = ~np.isnan(labels[:, t])
        train_y = train_labels[:, t][~np.isnan(train_labels[:, t])]
        lines += _task_section(
            task, per_task[task.name], labels[present, t], predictions[present, t], train_y
        )
    return "\n".join(lines) + "\n"
