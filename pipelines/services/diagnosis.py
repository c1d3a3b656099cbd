"""Why a task is not learning: the suggestions of ``reports/diagnosis.md``.

``evaluate`` calls them. Everything here reads measurements (test predictions, the training
labels, ``reports/affinity.json``, the Δm block of ``services.comparison``, the label audit of
``reports/augmentation.json``) and says what they show; each suggestion names the number that
triggered it. A class is named as ``tasks.<task>.classes`` names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtl_models.augment.effects import TRANSFORMS
from mtl_models.tasks import TaskSpec
from mtl_models.weighting import WEIGHTINGS

# A single-task model beats the multi-task one on a task by more than this relative margin:
# sharing costs that task (smaller gaps are within seed-to-seed noise on small test splits).
NEGATIVE_TRANSFER = -0.01
# A class this rare in the training labels, and never predicted, is "not learned".
RARE_SHARE = 0.05
# A task this far below the mean score of the others is "lagging".
LAG = 0.10
# Mean incoming lookahead affinity below this: the other tasks' steps raise the task's loss.
PULLED_BACK = -1e-3
GRADIENT_METHODS_FOR_CONFLICT = "upgrad` or `pcgrad"


# ----------------------------------------------------------------------- diagnosis.md


@dataclass
class Finding:
    task: str
    text: str


def _share(values: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(values.astype(int), minlength=n_classes).astype(float)
    return counts / max(counts.sum(), 1.0)


def _pct(x: float) -> str:
    if 0 < x < 0.01:
        return "<1%"
    if 0.99 < x < 1:
        return ">99%"
    return f"{x:.0%}"


def _class(task: TaskSpec, k: int) -> str:
    """A class as a person reads it: its name (quoted) where the task names its classes."""
    return f"'{task.class_names[k]}'" if task.classes is not None else str(k)


def audit_findings(augmentation: Mapping[str, Any] | None) -> list[Finding]:
    """One finding per transform the label audit flags (``reports/augmentation.json``)."""
    audit = (augmentation or {}).get("audit") or {}
    findings = []
    for t in audit.get("transforms", []):
        if not t["flagged"]:
            continue
        rows = t["tasks"]
        worst = ", ".join(
            f"{task} {rows[task]['clean']:.2f} -> {rows[task]['transformed']:.2f}"
            for task in t["flagged"][:4]
        )
        more = len(t["flagged"]) - min(len(t["flagged"]), 4)
        effects = ", ".join(t["effects"]) or "its effects"
        text = (
            f"(augmentation) changes labels: the label audit's probe scores {worst}"
            f"{f' (+{more} more)' if more else ''} on the validation images without and with "
            "it (beyond noise), so it changes these labels or hides what they are read from. "
            f"Declare `sensitive_to: [{effects}]` for {', '.join(t['flagged'])} (it is then "
            "excluded)"
        )
        if TRANSFORMS[t["name"]].remappable and not t["remap"]:
            text += f", or the remap `augment.remaps.{t['name']}` if it moves labels between tasks"
        text += "; where a label truly survives it, a longer probe (`augment.audit.epochs`) tells"
        findings.append(Finding(t["name"], text + "."))
    return findings


def _incoming_affinity(affinity: Mapping[str, Any] | None, task: str) -> float | None:
    """Mean Z(i -> task) over the other tasks i: how the others' updates move its loss."""
    if not affinity or not affinity.get("enabled"):
        return None
    values = [
        row.get(task)
        for source, row in affinity["matrix"].items()
        if source != task and row.get(task) is not None
    ]
    return float(np.mean(values)) if values else None


def _group_of(affinity: Mapping[str, Any] | None, task: str) -> list[str] | None:
    if not affinity or not affinity.get("enabled"):
        return None
    return next((g for g in affinity["grouping"]["groups"] if task in g), None)


def find_issues(
    tasks: Sequence[TaskSpec],
    per_task: Mapping[str, Mapping[str, Any]],
    labels: np.ndarray,
    predictions: np.ndarray,
    train_labels: np.ndarray,
    weighting: str,
    affinity: Mapping[str, Any] | None = None,
    comparison: Mapping[str, Any] | None = None,
    augmentation: Mapping[str, Any] | None = None,
) -> list[Finding]:
    """Concrete suggestions, each drawn from a measurement of one task (or, for a flagged
    augmentation, of one transform)."""
    findings: list[Finding] = audit_findings(augmentation)
    scores = {n: float(m["score"]) for n, m in per_task.items() if np.isfinite(m["score"])}
    learning = {
        n
        for n, m in per_task.items()
        if n in scores and not m["collapsed"] and m["score"] > m["majority_baseline"]
    }
    gains = (comparison or {}).get("tasks", {})
    lagging: list[str] = []
    for t, task in enumerate(tasks):
        m = per_task[task.name]
        if not np.isfinite(m["score"]):
            findings.append(Finding(task.name, "has no labelled test samples: nothing measured."))
            continue
        y_present = ~np.isnan(labels[:, t])
        y, p = labels[y_present, t], predictions[y_present, t]
        train_y = train_labels[:, t][~np.isnan(train_labels[:, t])]
        metric = task.primary_metric
        # the bar is set by the tasks that learn (every primary score is 1 when perfect); a
        # collapsed task or one at its majority baseline would lower it and hide a laggard
        others = [s for n, s in scores.items() if n != task.name and n in learning]

        if m["collapsed"] and task.is_discrete:
            assert task.n_classes is not None
            pred_share = _share(p, task.n_classes)
            top = int(pred_share.argmax())
            text = (
                f"has collapsed: it predicts class {_class(task, top)} for "
                f"{_pct(pred_share[top])} of test samples, while its most common label covers only "
                f"{_pct(_share(y, task.n_classes).max())}."
            )
            if task.class_weights is None:
                text += (
                    f" Weight its classes by their rarity: `tasks.{task.name}.class_weighting: "
                    "balanced` (or `effective_number`; `train.class_weighting` sets every task)."
                )
            hint = task.kind_plugin.diagnosis_hint(task)
            if hint:
                text += f" {hint}"
            findings.append(Finding(task.name, text))
            lagging.append(task.name)
        elif m["collapsed"]:
            findings.append(
                Finding(
                    task.name,
                    "has collapsed: its predictions barely vary (spread under "
                    "5% of the labels'); it predicts about the mean.",
                )
            )
            lagging.append(task.name)
        elif m["score"] <= m["majority_baseline"]:
            findings.append(
                Finding(
                    task.name,
                    f"does not beat its majority baseline ({metric} {m['score']:.3f} vs "
                    f"{m['majority_baseline']:.3f} for always predicting the training mode).",
                )
            )
            lagging.append(task.name)
        elif others and m["score"] < float(np.mean(others)) - LAG:
            findings.append(
                Finding(
                    task.name,
                    f"lags the other tasks ({metric} {m['score']:.3f} vs their mean "
                    f"{np.mean(others):.3f}).",
                )
            )
            lagging.append(task.name)

        if task.is_discrete and len(train_y):
            assert task.n_classes is not None
            train_share = _share(train_y, task.n_classes)
            predicted = set(np.unique(p).astype(int).tolist())
            missed = [
                k
                for k in np.unique(y).astype(int).tolist()
                if k not in predicted and train_share[k] < RARE_SHARE
            ]
            if missed and not m["collapsed"]:
                shown = ", ".join(
                    f"{_class(task, k)} ({int((y == k).sum())} in test, "
                    f"{_pct(train_share[k])} of training labels)"
                    for k in missed
                )
                findings.append(
                    Finding(
                        task.name,
                        f"never predicts its rare class{'es' if len(missed) > 1 else ''} "
                        f"{shown}: "
                        + (
                            f"weight classes by rarity (`tasks.{task.name}.class_weighting: "
                            "balanced`), "
                            if task.class_weights is None
                            else "its classes are weighted already: try `focal_gamma: 2`, "
                        )
                        + "or collect more samples of them.",
                    )
                )

        gain = gains.get(task.name)
        if gain is not None and gain["gain"] < NEGATIVE_TRANSFER:
            group = _group_of(affinity, task.name)
            text = (
                f"is better learned alone: the single-task model scores {gain['single_task']:.3f}"
                f" against {gain['multi_task']:.3f} here ({gain['gain']:+.1%}), so sharing costs "
                "it. Share fewer blocks (a lower `model.shared_depth`), let each task choose "
                "what it shares (`model.architecture.name: mmoe` or `cgc`, gates over "
                f"experts), or try `train.weighting.method: {GRADIENT_METHODS_FOR_CONFLICT}`, "
                "which remove conflicting gradient components"
            )
            if group is not None:
                text += f", or train it with its affinity group only ({', '.join(group)})"
            findings.append(Finding(task.name, text + "."))

        incoming = _incoming_affinity(affinity, task.name)
        if incoming is not None and incoming < PULLED_BACK:
            group = _group_of(affinity, task.name) or [task.name]
            findings.append(
                Finding(
                    task.name,
                    f"is pulled back by the others: a step on another task raises its loss "
                    f"(mean incoming affinity {incoming:+.4f}). The affinity grouping puts it "
                    f"with {', '.join(g for g in group if g != task.name) or 'no other task'}.",
                )
            )
    # a fixed linear combination of the losses
    fixed = weighting in WEIGHTINGS and WEIGHTINGS.get(weighting).fixed_weights
    if lagging and fixed:
        findings.append(
            Finding(
                "weighting",
                f"`{weighting}` gives every loss a fixed share, and {len(lagging)} task(s) "
                f"fall behind ({', '.join(lagging)}): a method that rebalances during training "
                "(`train.weighting.method: uw` or `dwa`, or a gradient method such as `upgrad`) "
                "can lift them; `mtlflow tune` can choose among them.",
            )
        )
    return findings
