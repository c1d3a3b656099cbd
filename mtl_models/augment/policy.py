"""Label-safe augmentation: keep the transforms every task's label survives, remap the rest.

:func:`resolve_policy` instantiates each requested albumentations transform, reads its effects
(:mod:`mtl_models.augment.effects`) and compares them with what every task tolerates. A transform is
*kept* when it is within every task's declared tolerance (or no task declares a sensitivity
to what it does, which it says as such, never as "safe"), or when a declared remap says where
each label it moves goes (a horizontal flip swaps ``*_left`` and ``*_right``); otherwise it is
*excluded*, with the tasks and effects that rule it out. :class:`LabelSafeAugment` applies the
kept transforms and permutes the label vector for every remapped transform that actually fired.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

import albumentations as A
import numpy as np

from mtl_models.augment.effects import (
    BOOLEAN_EFFECTS,
    TRANSFORMS,
    check_remappable,
    check_transform,
    expand_remap,
)


@dataclass(frozen=True)
class TransformRequest:
    """One entry of a policy: the albumentations class name, its group and its arguments."""

    name: str
    group: str
    args: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""  # how the user refers to it, e.g. "augment.geometric[0]"

    @property
    def label(self) -> str:
        return self.where or self.name


@dataclass(frozen=True)
class Decision:
    """What the resolver decided for one requested transform, and why."""

    name: str
    group: str
    args: dict[str, Any]
    effects: dict[str, float]
    kept: bool
    reason: str
    remap: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "args": self.args,
            "effects": self.effects,
            "kept": self.kept,
            "reason": self.reason,
            "remap": self.remap,
        }


class PolicyError(ValueError):
    """A policy entry that cannot be built: unknown name, bad argument, bad remap."""


def _instantiate(request: TransformRequest, image_size: int) -> A.BasicTransform:
    args = dict(request.args)
    if request.name == "RandomResizedCrop":  # output must keep the input size for batching
        args.setdefault("size", (image_size, image_size))
    try:
        return getattr(A, request.name)(**args)
    except Exception as exc:  # albumentations validates arguments with pydantic
        first = str(exc).strip().splitlines()
        raise PolicyError(
            f"{request.label}: {request.name}({_fmt_args(args)}) is invalid: "
            + " ".join(line.strip() for line in first[:4])
        ) from None


def _fmt_args(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _join(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _decide(
    request: TransformRequest,
    effects: dict[str, float],
    sensitivity: Mapping[str, Mapping[str, float]],
    remap: dict[str, str],
    has_remap: bool,
) -> tuple[bool, str]:
    # effect -> tasks whose tolerance it exceeds, and that no remap moves
    blocked: dict[str, list[str]] = {}
    unmoved = []
    for task, tolerated in sensitivity.items():
        over = [e for e, m in effects.items() if e in tolerated and m > tolerated[e]]
        if not over:
            continue
        if task in remap:
            continue
        if has_remap:
            unmoved.append(task)
        for effect in over:
            blocked.setdefault(effect, []).append(task)
    if not blocked:
        if remap:
            moves = [f"{s}->{d}" for s, d in remap.items()]
            return True, f"kept with label remap {_join(moves, 6)}"
        # "safe" only where a declaration says so: a task that declares nothing about these
        # effects (its kind's defaults included) has not been checked, only not objected
        declared = [
            t for t, tolerated in sensitivity.items() if any(e in tolerated for e in effects)
        ]
        if not declared:
            return True, "no sensitivity declared"
        if len(declared) == len(sensitivity):
            return True, "within every task's declared tolerance"
        others = [t for t in sensitivity if t not in declared]
        return True, (
            f"within the declared tolerance of {_join(declared)}; "
            f"no sensitivity declared by {_join(others)}"
        )

    def who(tasks: list[str]) -> str:
        return f"all {len(tasks)} tasks" if len(tasks) == len(sensitivity) > 1 else _join(tasks)

    parts = []
    for effect, tasks in blocked.items():
        limits = sorted({sensitivity[t][effect] for t in tasks})
        limit = "none" if limits == [0.0] else "at most " + "/".join(f"{x:g}" for x in limits)
        amount = "" if effect in BOOLEAN_EFFECTS else f" {effects[effect]:g}"
        parts.append(f"{effect}{amount} changes the labels of {who(tasks)} (tolerated: {limit})")
    reason = "; ".join(parts)
    if has_remap and unmoved:
        reason += f"; the declared remap does not move {_join(unmoved)}"
    elif TRANSFORMS[request.name].remappable:
        reason += f"; declare a remap for {request.name} if it moves labels between tasks"
    return False, reason


@dataclass(frozen=True)
class ResolvedPolicy:
    """The outcome of resolving a requested policy against the tasks."""

    task_names: tuple[str, ...]
    decisions: tuple[Decision, ...]
    image_size: int
    enabled: bool = True

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.kept] if self.enabled else []

    @property
    def excluded(self) -> list[Decision]:
        return [d for d in self.decisions if not d.kept]

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "tasks": list(self.task_names),
            "kept": [d.to_dict() for d in self.kept],
            "excluded": [d.to_dict() for d in self.excluded],
        }

    def describe(self) -> str:
        """Human-readable lines: what is kept, what is excluded, and why."""
        if not self.enabled:
            return "augmentation: off (augment.enabled is false)"
        lines = [f"augmentation: {len(self.kept)} kept, {len(self.excluded)} excluded"]
        for d in self.decisions:
            mark = "keep" if d.kept else "skip"
            args = _fmt_args(d.args)
            lines.append(f"  {mark} {d.group:<11} {d.name}({args}): {d.reason}")
        return "\n".join(lines)

    def build(self, seed: int = 0) -> LabelSafeAugment | None:
        """The train-time transform, or None when nothing is kept (or augmentation is off)."""
        if not self.kept:
            return None
        index = {name: i for i, name in enumerate(self.task_names)}
        transforms, remaps = [], {}
        for d in self.kept:
            transforms.append(
                _instantiate(TransformRequest(d.name, d.group, d.args), self.image_size)
            )
            if d.remap:
                gather = np.arange(len(self.task_names))
                for source, destination in d.remap.items():
                    gather[index[destination]] = index[source]  # new[dst] = old[src]
                remaps[d.name] = gather
        return LabelSafeAugment(transforms, remaps, seed=seed)


def resolve_policy(
    requests: Sequence[TransformRequest],
    sensitivity: Mapping[str, Mapping[str, float]],
    remaps: Mapping[str, Mapping[str, str]] | None = None,
    *,
    image_size: int,
    enabled: bool = True,
) -> ResolvedPolicy:
    """Decide, per requested transform, whether every task's label survives it.

    ``sensitivity`` maps each task (in label order) to ``{effect: largest tolerated magnitude}``
    (:func:`mtl_models.augment.effects.task_sensitivity`); ``remaps`` maps a transform name to
    ``{source_task: destination_task}`` (``*`` patterns allowed). Raises :class:`PolicyError`
    naming the entry for an unknown transform, an invalid argument or a bad remap.
    """
    task_names = tuple(sensitivity)
    remaps = remaps or {}
    expanded: dict[str, dict[str, str]] = {}
    for name, mapping in remaps.items():
        try:
            check_remappable(name)
            expanded[name] = expand_remap(mapping, task_names)
        except ValueError as exc:
            raise PolicyError(f"augment.remaps.{name}: {exc}") from None

    decisions = []
    for request in requests:
        try:
            info = check_transform(request.name, request.group)
        except ValueError as exc:
            raise PolicyError(f"{request.label}: {exc}") from None
        transform = _instantiate(request, image_size)
        effects = {
            e: round(float(m), 6) for e, m in info.effects(transform, image_size).items() if m > 0
        }
        remap = expanded.get(request.name, {})
        kept, reason = _decide(request, effects, sensitivity, remap, request.name in expanded)
        decisions.append(
            Decision(
                name=request.name,
                group=request.group,
                args=dict(request.args),
                effects=effects,
                kept=kept,
                reason=reason,
                remap=remap if kept else {},
            )
        )
    return ResolvedPolicy(task_names, tuple(decisions), image_size, enabled)


class LabelSafeAugment:
    """``(image, labels) -> (image, labels)``: the kept transforms, with label remaps.

    Picklable and reseedable, so each DataLoader worker draws its own augmentations
    (:func:`mtl_models.train.loaders.make_loader` reseeds it from the worker's torch seed).
    """

    def __init__(
        self,
        transforms: Sequence[A.BasicTransform],
        remaps: Mapping[str, np.ndarray],
        seed: int = 0,
    ) -> None:
        self.remaps = dict(remaps)
        self.compose = A.Compose(list(transforms), save_applied_params=True)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Independent random streams per transform, all derived from ``seed``.

        ``Compose(seed=...)`` in albumentations 2.0 gives every transform the *same* seed, so
        transforms with equal ``p`` fire together (a flip always with the gamma change); here
        each transform gets its own child of one ``SeedSequence``.
        """
        self.compose.set_random_seed(seed)
        children = np.random.SeedSequence(seed).spawn(len(self.compose.transforms))
        for transform, child in zip(self.compose.transforms, children, strict=True):
            state = child.generate_state(2)
            transform.set_random_state(
                np.random.default_rng(child), random.Random(int(state[0]) << 32 | int(state[1]))
            )

    def apply(
        self, image: np.ndarray, labels: np.ndarray, masks: Sequence[np.ndarray] | None = None
    ) -> Augmented:
        """One augmented sample, with the transforms that fired and, if given, moved ``masks``.

        Masks follow the geometric transforms exactly (nearest neighbour), so a test or a
        segmentation target can see where each labelled object went.
        """
        targets: dict[str, Any] = {"image": image}
        if masks is not None:
            targets["masks"] = [np.ascontiguousarray(m, dtype=np.uint8) for m in masks]
        out = self.compose(**targets)
        fired = [name for name, _ in out["applied_transforms"]]
        for name in fired:
            gather = self.remaps.get(name)
            if gather is not None:
                labels = labels[gather]
        augmented = out["image"]
        if augmented.ndim == 2:  # some OpenCV paths drop a single channel axis
            augmented = augmented[..., None]
        moved = [np.asarray(m) > 0 for m in out["masks"]] if masks is not None else None
        return Augmented(augmented, labels, fired, moved)

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sample = self.apply(image, labels)
        return sample.image, sample.labels


@dataclass(frozen=True)
class Augmented:
    image: np.ndarray
    labels: np.ndarray
    fired: list[str]
    masks: list[np.ndarray] | None = None
