"""Δm: the multi-task model against models that each learn one task, on the same split.

``reports/baselines.json`` holds two such references: the single-task networks (does sharing
help each task?) and, for tables, gradient-boosted trees (is a network worth it at all?).
``evaluate`` compares the model with each; a reference fitted on another split or for other
tasks is not compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mtl_models.metrics import delta_m

RERUN = "run `mtlflow baselines` again"
NO_BASELINES = (
    "no single-task baselines; `mtlflow baselines --set baselines.enabled=true` trains them"
)
NO_BOOSTED = (
    "no gradient-boosted baselines; `mtlflow baselines --set baselines.enabled=true` fits them "
    "for table inputs"
)


def compare_scores(
    per_task: Mapping[str, Mapping[str, Any]], reference: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Δm and each task's relative gain over ``reference`` (per task, its ``score`` and
    ``metric``).

    Tasks whose reference score is not positive (QWK or R² of 0 or below) have no relative
    gain, so they are listed under ``excluded`` with their absolute difference and left out
    of Δm.
    """
    multi_scores, single_scores, excluded = {}, {}, {}
    for task, m in per_task.items():
        mtl, st = float(m["score"]), float(reference[task]["score"])
        if not np.isfinite(mtl) or not np.isfinite(st) or st <= 0:
            excluded[task] = {
                "multi_task": mtl,
                "single_task": st,
                "difference": mtl - st,
                "reason": "single-task score is not positive: no relative gain"
                if np.isfinite(st)
                else "no score (no labelled test samples)",
            }
        else:
            multi_scores[task], single_scores[task] = mtl, st
    if not multi_scores:
        return {"note": "no task has a positive single-task score", "excluded": excluded}
    value, gains = delta_m(multi_scores, single_scores)
    return {
        "delta_m": value,
        "tasks": {
            task: {
                "metric": reference[task].get("metric"),
                "multi_task": multi_scores[task],
                "single_task": single_scores[task],
                "gain": gains[task],
            }
            for task in multi_scores
        },
        "excluded": excluded,
    }


def _mismatch(
    per_task: Mapping[str, Any], report: Mapping[str, Any], tasks: Mapping[str, Any], split: str
) -> str | None:
    """Why ``tasks`` of ``report`` cannot be compared with the model's, or None."""
    if report.get("split_sha256") != split:
        return f"reports/baselines.json was trained on another split; {RERUN}"
    if set(tasks) != set(per_task):
        return (
            f"reports/baselines.json covers tasks {sorted(tasks)}, the model "
            f"{sorted(per_task)}; {RERUN}"
        )
    return None


def _compared(
    per_task: Mapping[str, Mapping[str, Any]],
    baselines: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    split_sha256: str,
) -> dict[str, Any]:
    note = _mismatch(per_task, baselines, tasks, split_sha256)
    if note is not None:
        return {"note": note}
    block = compare_scores(per_task, tasks)
    if "delta_m" in block:
        block["baselines_run_id"] = baselines.get("mlflow_run_id")
    return block


def compare_with_baselines(
    per_task: Mapping[str, Mapping[str, Any]],
    baselines: Mapping[str, Any] | None,
    split_sha256: str,
) -> dict[str, Any]:
    """The ``baselines`` block of ``metrics.json``: Δm against the single-task networks and
    each task's relative gain (see :func:`compare_scores`)."""
    if not baselines or not baselines.get("enabled"):
        return {"note": NO_BASELINES}
    return _compared(per_task, baselines, baselines["tasks"], split_sha256)


def compare_with_gradient_boosting(
    per_task: Mapping[str, Mapping[str, Any]],
    baselines: Mapping[str, Any] | None,
    split_sha256: str,
) -> dict[str, Any]:
    """The ``gradient_boosting`` block of ``metrics.json``: Δm against the gradient-boosted
    trees of ``baselines.json`` and each task's relative gain, shaped like the ``baselines``
    block (``single_task`` is the trees' score: each tree model learns one task too)."""
    if not baselines or not baselines.get("enabled"):
        return {"note": NO_BOOSTED}
    boosted = baselines.get("gradient_boosting")
    if boosted is None:  # written before the trees existed
        return {"note": f"reports/baselines.json has no gradient-boosted baselines; {RERUN}"}
    if not boosted.get("enabled"):
        return {"note": boosted.get("note", NO_BOOSTED)}
    return _compared(per_task, baselines, boosted["tasks"], split_sha256)


def format_gains(
    block: Mapping[str, Any], reference: str = "single-task", label: str = "Δm"
) -> str:
    """A Δm block as text: per task the two scores and the gain, then Δm (``label``) against
    the ``reference`` models, or the block's note."""
    if "delta_m" not in block:
        return f"{label}: {block.get('note', 'not computed')}"
    width = max(11, len(reference))
    lines = [f"{'task':<20} {'multi-task':>10} {reference:>{width}} {'gain':>8}"]
    for task, row in block["tasks"].items():
        lines.append(
            f"{task:<20} {row['multi_task']:>10.3f} {row['single_task']:>{width}.3f} "
            f"{row['gain']:>+8.1%}"
        )
    for task, row in block.get("excluded", {}).items():
        lines.append(
            f"{task:<20} {row['multi_task']:>10.3f} {row['single_task']:>{width}.3f} {'n/a':>8}"
        )
    n = len(block["tasks"])
    lines.append(f"{label} = {block['delta_m']:+.2%} over {n} tasks (multi-task vs {reference})")
    return "\n".join(lines)
