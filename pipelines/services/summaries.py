"""The results as a person reads them in markdown: the per-task test table and the registry
decision. The Prefect flow-run report and the MLflow run's description both use them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

METRIC_COLUMNS = ("kind", "score", "majority_baseline", "accuracy", "collapsed")
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI (markdown)


def cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def metrics_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per task for a table: the task and its ``METRIC_COLUMNS``."""
    rows = []
    for task, values in metrics["tasks"].items():
        row: dict[str, Any] = {"task": task}
        for column in METRIC_COLUMNS:
            value = values.get(column)
            row[column] = round(value, 6) if isinstance(value, float) else value
        rows.append(row)
    return rows


def metrics_markdown(metrics: Mapping[str, Any]) -> list[str]:
    """The per-task test table, the mean score and Δm against each baseline that exists."""
    lines = ["| task | " + " | ".join(c.replace("_", " ") for c in METRIC_COLUMNS) + " |"]
    lines.append("|---" * (len(METRIC_COLUMNS) + 1) + "|")
    for row in metrics_rows(metrics):
        lines.append("| " + " | ".join(cell(row[c]) for c in ("task", *METRIC_COLUMNS)) + " |")
    summary = metrics["summary"]
    lines += [
        "",
        f"Mean score {summary['mean_score']:.4f}; "
        f"collapsed: {', '.join(summary['collapsed_tasks']) or 'none'}.",
    ]
    delta_m = (metrics.get("baselines") or {}).get("delta_m")
    if delta_m is not None:
        lines.append(f"Δm against single-task baselines: {delta_m:+.2%}.")
    boosted = (metrics.get("gradient_boosting") or {}).get("delta_m")
    if boosted is not None:
        lines.append(f"Δm against gradient-boosted trees (one per task): {boosted:+.2%}.")
    return lines


def registry_line(decision: Mapping[str, Any], version_url: str) -> str:
    name, version, alias = decision["model_name"], decision["version"], decision["alias"]
    head = f"`{name}` [version {version}]({version_url}), mean test score {decision['score']:.4f}: "
    previous = decision.get("previous_champion_score")
    if decision["promoted"]:
        if previous is None:
            return head + f"promoted to `@{alias}` (no `@{alias}` before)"
        return head + (
            f"promoted to `@{alias}` (beats {previous:.4f} of version "
            f"{decision['previous_champion_version']})"
        )
    champion = decision["champion_version"]
    score = decision.get("champion_score", previous)
    if champion == decision.get("previous_champion_version"):
        return head + f"registered; `@{alias}` stays on version {champion} ({score:.4f})"
    # a better model was registered at the same time and took the alias
    return (
        head
        + f"registered; `@{alias}` is on version {champion} ({score:.4f}), registered meanwhile"
    )
