"""Empirical label-safety audit: does a kept transform change what a label says?

Declarations (``sensitive_to``, remaps) are claims about the labels; this checks them on data.
A *probe*, a model trained without augmentation, predicts the validation images twice: as they
are, and with one kept transform forced to fire (``p=1``, labels remapped as training remaps
them). A task whose primary score falls, beyond noise, by more than ``max_drop`` of the probe's
*skill* on it (its clean score above the majority baseline's) flags the transform: for that
task the transform moves the label, or hides what the label is read from.

Noise: the drop is paired (same images, same probe). Its standard error comes from a
delete-a-group jackknife over the validation samples, every draw of a sample in the sample's
group, so both which samples were drawn and the transform's random draws count; a task is
flagged when the drop's one-sided lower confidence bound exceeds the tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from mtl_models.augment.policy import Decision, LabelSafeAugment, ResolvedPolicy
from mtl_models.metrics import task_metrics
from mtl_models.tasks import TaskSpec

# images [N, H, W, C] uint8 -> decoded predictions [N, T] in task order
Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class AuditSettings:
    """How strict the audit is and how much it measures.

    ``max_drop``: share of the probe's skill on a task a transform may cost it before it is
    flagged (the probe never saw augmented images, so a harmless transform costs a little);
    ``confidence``: of the drop's lower bound; ``repeats``: draws of each random transform per
    image; ``groups``: of the jackknife.
    """

    max_drop: float = 0.15
    confidence: float = 0.95
    repeats: int = 2
    groups: int = 20
    seed: int = 0


@dataclass(frozen=True)
class TaskShift:
    """One task's primary score on the clean and on the transformed validation images."""

    metric: str
    clean: float
    transformed: float
    baseline: float  # the majority baseline's score: the probe's skill is measured from it
    drop: float  # clean - transformed
    bound: float  # the drop exceeds this at the audit's confidence
    flagged: bool

    @property
    def skill(self) -> float:
        return self.clean - self.baseline

    @property
    def measured(self) -> bool:
        """Whether the probe reads this label at all (else its drop says nothing)."""
        return bool(np.isfinite(self.skill) and self.skill > 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "clean": _round(self.clean),
            "transformed": _round(self.transformed),
            "baseline": _round(self.baseline),
            "drop": _round(self.drop),
            "bound": _round(self.bound),
            # the criterion: bound_share > max_drop flags the task
            "drop_share": _round(self.drop / self.skill) if self.measured else None,
            "bound_share": _round(self.bound / self.skill) if self.measured else None,
            "measured": self.measured,
            "flagged": self.flagged,
        }


def _round(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


@dataclass(frozen=True)
class TransformAudit:
    """The audit of one kept transform: every task's shift, and the verdict."""

    name: str
    effects: dict[str, float]
    remap: dict[str, str]
    tasks: dict[str, TaskShift]

    @property
    def flagged(self) -> list[str]:
        """Tasks whose score the transform lowers beyond noise and tolerance, worst first."""
        hit = [t for t, s in self.tasks.items() if s.flagged]
        return sorted(hit, key=lambda t: -self.tasks[t].drop)

    @property
    def verdict(self) -> str:
        measured = {t: s for t, s in self.tasks.items() if s.measured}
        if not measured:
            return "not measured: the probe beats no task's majority baseline"
        unmeasured = [t for t in self.tasks if t not in measured]
        if self.flagged:
            shown = [
                f"{t} {s.clean:.2f} -> {s.transformed:.2f}"
                for t, s in ((t, self.tasks[t]) for t in self.flagged[:4])
            ]
            more = len(self.flagged) - len(shown)
            text = "changes labels: " + ", ".join(shown) + (f" (+{more} more)" if more else "")
        else:
            worst = max(measured, key=lambda t: measured[t].drop)
            text = (
                "no task's score drops beyond noise "
                f"(largest drop {measured[worst].drop:+.3f}, {worst})"
            )
        if unmeasured:
            shown = ", ".join(unmeasured[:4]) + (
                f" (+{len(unmeasured) - 4} more)" if len(unmeasured) > 4 else ""
            )
            text += f"; not measured for {shown}: the probe does not beat its majority baseline"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "effects": self.effects,
            "remap": self.remap,
            "flagged": self.flagged,
            "verdict": self.verdict,
            "tasks": {t: s.to_dict() for t, s in self.tasks.items()},
        }


@dataclass(frozen=True)
class LabelAudit:
    """The audit of every kept transform of a policy."""

    transforms: tuple[TransformAudit, ...]
    clean: dict[str, float]  # the probe's primary score per task on the clean images
    n_samples: int
    settings: AuditSettings = field(default_factory=AuditSettings)
    probe: str = "a model trained without augmentation"
    seconds: dict[str, float] = field(default_factory=dict)  # what the audit cost, by part

    @property
    def flagged(self) -> list[TransformAudit]:
        return [t for t in self.transforms if t.flagged]

    def by_name(self) -> dict[str, TransformAudit]:
        return {t.name: t for t in self.transforms}

    def criterion(self) -> str:
        s = self.settings
        return (
            f"flagged where a task's score drops by more than {s.max_drop:.0%} of the probe's "
            f"skill (score above its majority baseline) at {s.confidence:.0%} confidence"
        )

    def summary(self) -> str:
        """One line: which transforms change which labels."""
        if not self.flagged:
            return f"no transform flagged; {len(self.transforms)} audited"
        shown = "; ".join(f"{t.name} ({', '.join(t.flagged)})" for t in self.flagged)
        return f"flagged {shown}; {len(self.transforms)} audited"

    def describe(self) -> str:
        """Human-readable lines: the probe, then one verdict per audited transform."""
        lines = [
            f"label audit: {self.probe}; {self.n_samples} validation images, each transform "
            f"forced to fire ({self.settings.repeats} draws of a random one); {self.criterion()}"
        ]
        for t in self.transforms:
            mark = "FLAG" if t.flagged else "ok  "
            lines.append(f"  {mark} {t.name}: {t.verdict}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "probe": self.probe,
            "criterion": self.criterion(),
            "settings": {
                "max_drop": s.max_drop,
                "confidence": s.confidence,
                "repeats": s.repeats,
                "groups": s.groups,
                "seed": s.seed,
            },
            "n_samples": self.n_samples,
            "seconds": self.seconds,
            "clean": {t: _round(v) for t, v in self.clean.items()},
            "flagged": [t.name for t in self.flagged],
            "transforms": [t.to_dict() for t in self.transforms],
        }


def _score(task: TaskSpec, y: np.ndarray, p: np.ndarray) -> float:
    present = ~np.isnan(y)
    if not present.any():
        return float("nan")
    return float(task.kind_plugin.scores(task, y[present], p[present])[task.primary_metric])


def _jackknife(
    task: TaskSpec, y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_groups: int
) -> np.ndarray:
    """The score with each group of samples left out (``y``/``p`` hold ``repeats`` copies of
    the samples, in blocks, and ``groups`` the group of each sample)."""
    copies = len(y) // len(groups)
    tiled = np.tile(groups, copies)
    return np.array([_score(task, y[tiled != g], p[tiled != g]) for g in range(n_groups)])


def _shift(
    task: TaskSpec,
    clean: float,
    baseline: float,
    after: float,
    drops: np.ndarray,
    z: float,
    settings: AuditSettings,
) -> TaskShift:
    """The drop, its lower confidence bound from the jackknife replicates of the drop, and
    whether it exceeds the tolerated share of the probe's skill."""
    drops = drops[np.isfinite(drops)]
    g = len(drops)
    error = (
        math.sqrt((g - 1) / g * float(((drops - drops.mean()) ** 2).sum())) if g > 1 else math.nan
    )
    drop = clean - after
    bound = drop - z * error
    skill = clean - baseline
    flagged = bool(skill > 0 and bound > settings.max_drop * skill)
    return TaskShift(task.primary_metric, clean, after, baseline, drop, bound, flagged)


def forced(decision: Decision, policy: ResolvedPolicy, seed: int) -> LabelSafeAugment:
    """The kept transform alone, firing on every image, with its label remap."""
    always = replace(decision, args={**decision.args, "p": 1.0})
    alone = ResolvedPolicy(policy.task_names, (always,), policy.image_size).build(seed=seed)
    assert alone is not None  # one kept transform
    return alone


def transformed_copies(
    decision: Decision,
    policy: ResolvedPolicy,
    images: np.ndarray,
    labels: np.ndarray,
    repeats: int,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``repeats`` transformed copies of the images with their (remapped) labels; one
    for a transform that draws nothing (a flip), whose copies would all be equal."""
    augment = forced(decision, policy, seed)
    copies: list[tuple[np.ndarray, np.ndarray]] = []
    for r in range(repeats):
        augment.reseed(seed + r)
        samples = [augment.apply(image, label) for image, label in zip(images, labels, strict=True)]
        copy = (np.stack([s.image for s in samples]), np.stack([s.labels for s in samples]))
        if copies and np.array_equal(copy[0], copies[0][0]):
            break
        copies.append(copy)
    return copies


def audit_policy(
    policy: ResolvedPolicy,
    predict: Predict,
    images: np.ndarray,
    labels: np.ndarray,
    tasks: Sequence[TaskSpec],
    majority: Mapping[str, float] | None = None,
    settings: AuditSettings | None = None,
    probe: str = "a model trained without augmentation",
) -> LabelAudit:
    """Audit every kept transform of ``policy`` on ``images``/``labels`` (``[N, T]``, NaN =
    missing) with the probe's ``predict``; ``majority``: each task's majority-baseline
    prediction (the training split's mode or mean; by default the labels')."""
    settings = settings or AuditSettings()
    names = [t.name for t in tasks]
    if list(policy.task_names) != names:
        raise ValueError(f"policy tasks {list(policy.task_names)} are not {names}")
    labels = np.asarray(labels, dtype=np.float32)
    n, n_groups = len(images), min(settings.groups, len(images))
    groups = np.random.default_rng(settings.seed).permutation(n) % n_groups
    z = NormalDist().inv_cdf(settings.confidence)
    clean_pred = predict(images)
    clean, clean_jack = {}, {}
    for t, task in enumerate(tasks):
        m = task_metrics(task, labels[:, t], clean_pred[:, t], (majority or {}).get(task.name))
        clean[task.name] = (float(m["score"]), float(m["majority_baseline"]))
        clean_jack[task.name] = _jackknife(task, labels[:, t], clean_pred[:, t], groups, n_groups)

    audits = []
    for decision in policy.kept:
        copies = transformed_copies(
            decision, policy, images, labels, settings.repeats, settings.seed
        )
        moved = np.concatenate([y for _, y in copies])
        pred = np.concatenate([predict(x) for x, _ in copies])
        shifts = {}
        for t, task in enumerate(tasks):
            after = _score(task, moved[:, t], pred[:, t])
            replicates = _jackknife(task, moved[:, t], pred[:, t], groups, n_groups)
            score, baseline = clean[task.name]
            shifts[task.name] = _shift(
                task, score, baseline, after, clean_jack[task.name] - replicates, z, settings
            )
        effects, remap = dict(decision.effects), dict(decision.remap)
        audits.append(TransformAudit(decision.name, effects, remap, shifts))
    return LabelAudit(
        tuple(audits),
        {name: score for name, (score, _) in clean.items()},
        n,
        settings,
        probe,
    )
