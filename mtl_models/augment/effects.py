"""What an augmentation does to a label: effects, task sensitivities and label remaps.

Every supported albumentations transform is described by the *effects* it has on an image
(``hflip``, ``rotate`` up to 15 degrees, ``blur`` up to a 5 px kernel, ...). Every task has a
*sensitivity*: the largest magnitude of each effect its label survives. A transform is safe for
a task when none of its effects exceeds what the task tolerates, or when a declared *remap*
says where the label moves (a horizontal flip moves a left-region defect to the right region).

This module is pure Python so configuration can validate names without importing
albumentations; :mod:`mtl_models.augment.policy` instantiates and applies the transforms.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtl_models.kinds import get_kind

GROUPS = ("geometric", "photometric", "noise_blur")

# effect -> (group, unit). Boolean effects (a flip either happens or not) have magnitude 1.
EFFECTS: dict[str, tuple[str, str]] = {
    "hflip": ("geometric", "mirrors left and right"),
    "vflip": ("geometric", "mirrors top and bottom"),
    "rot90": ("geometric", "quarter turns and transposes: rows become columns"),
    "rotate": ("geometric", "largest rotation, degrees"),
    "translate": ("geometric", "largest shift, fraction of the image side"),
    "scale": ("geometric", "largest zoom, relative change of size"),
    "shear": ("geometric", "largest shear, degrees"),
    "crop": ("geometric", "largest share of the image side cut away"),
    "warp": ("geometric", "non-rigid distortion (elastic, grid, perspective)"),
    "brightness": ("photometric", "largest brightness change, fraction of full range"),
    "contrast": ("photometric", "largest contrast change, relative"),
    "gamma": ("photometric", "largest gamma change, relative"),
    "hue": ("photometric", "largest hue shift, degrees"),
    "saturation": ("photometric", "largest saturation change, relative"),
    "grayscale": ("photometric", "colour removed"),
    "blur": ("noise_blur", "largest blur kernel, pixels"),
    "noise": ("noise_blur", "largest noise std, fraction of full range"),
    "compression": ("noise_blur", "largest JPEG quality loss, fraction"),
    "erase": ("noise_blur", "patches of the image blanked out"),
}

# Effects that either happen or not (magnitude 1); the rest scale with the transform's arguments.
BOOLEAN_EFFECTS = frozenset({"hflip", "vflip", "rot90", "grayscale", "erase"})


def _largest(value: Any) -> float:
    """Largest absolute value in a number, a range, or a mapping of ranges ({"x": .., "y": ..})."""
    if value is None:
        return 0.0
    if isinstance(value, Mapping):
        return max((_largest(v) for v in value.values()), default=0.0)
    if isinstance(value, (tuple, list)):
        return max((abs(float(v)) for v in value), default=0.0)
    return abs(float(value))


def _around_one(value: Any) -> float:
    """Largest relative change of a multiplicative range such as scale (0.9, 1.1) -> 0.1."""
    if isinstance(value, Mapping):
        return max((_around_one(v) for v in value.values()), default=0.0)
    values = value if isinstance(value, (tuple, list)) else (value,)
    return max(abs(float(v) - 1.0) for v in values)


def _affine(t: Any, size: int) -> dict[str, float]:
    shift = _largest(getattr(t, "translate_percent", None))
    if getattr(t, "translate_px", None) is not None:
        shift = max(shift, _largest(t.translate_px) / size)
    rotate = _largest(getattr(t, "limit", None)) or _largest(getattr(t, "rotate", None))
    scale = getattr(t, "scale", None)
    return {
        "rotate": rotate,
        "translate": shift,
        "scale": _around_one(scale) if scale is not None else 0.0,
        "shear": _largest(getattr(t, "shear", None)),
    }


def _resized_crop(t: Any, size: int) -> dict[str, float]:
    area = min(t.scale)
    ratio = max(abs(math.log(r)) for r in t.ratio)
    return {"crop": 1 - math.sqrt(area), "scale": 1 / math.sqrt(area) - 1, "warp": ratio}


def _gaussian_blur(t: Any, size: int) -> dict[str, float]:
    kernel = max(t.blur_limit)
    if min(t.blur_limit) == 0:  # a drawn 0 derives the kernel from sigma, as albumentations does
        kernel = max(kernel, int(max(t.sigma_limit) * 3.5) * 2 + 1)
    return {"blur": float(kernel)}


@dataclass(frozen=True)
class TransformInfo:
    """How mtlflow reads one albumentations transform's effects from its validated arguments."""

    group: str
    effects: Callable[[Any, int], dict[str, float]]
    # Deterministic when it fires, so one fixed permutation of tasks describes its label change.
    remappable: bool = False


def _fixed(**effects: float) -> Callable[[Any, int], dict[str, float]]:
    return lambda t, size: dict(effects)


TRANSFORMS: dict[str, TransformInfo] = {
    # geometric
    "HorizontalFlip": TransformInfo("geometric", _fixed(hflip=1), remappable=True),
    "VerticalFlip": TransformInfo("geometric", _fixed(vflip=1), remappable=True),
    "Transpose": TransformInfo("geometric", _fixed(rot90=1), remappable=True),
    "RandomRotate90": TransformInfo("geometric", _fixed(rot90=1)),
    "D4": TransformInfo("geometric", _fixed(hflip=1, vflip=1, rot90=1)),
    "Rotate": TransformInfo("geometric", _affine),
    "SafeRotate": TransformInfo("geometric", _affine),
    "Affine": TransformInfo("geometric", _affine),
    "ShiftScaleRotate": TransformInfo("geometric", _affine),
    "RandomResizedCrop": TransformInfo("geometric", _resized_crop),
    "Perspective": TransformInfo("geometric", lambda t, size: {"warp": _largest(t.scale)}),
    "ElasticTransform": TransformInfo("geometric", _fixed(warp=1)),
    "GridDistortion": TransformInfo("geometric", _fixed(warp=1)),
    # photometric
    "RandomBrightnessContrast": TransformInfo(
        "photometric",
        lambda t, size: {
            "brightness": _largest(t.brightness_limit),
            "contrast": _largest(t.contrast_limit),
        },
    ),
    "ColorJitter": TransformInfo(
        "photometric",
        lambda t, size: {
            "brightness": _around_one(t.brightness),
            "contrast": _around_one(t.contrast),
            "saturation": _around_one(t.saturation),
            "hue": 360 * _largest(t.hue),  # a fraction of the hue circle
        },
    ),
    "HueSaturationValue": TransformInfo(
        "photometric",
        lambda t, size: {
            "hue": 2 * _largest(t.hue_shift_limit),  # OpenCV's uint8 hue runs 0-180
            "saturation": _largest(t.sat_shift_limit) / 255,
            "brightness": _largest(t.val_shift_limit) / 255,
        },
    ),
    "RandomGamma": TransformInfo(
        "photometric", lambda t, size: {"gamma": _around_one([g / 100 for g in t.gamma_limit])}
    ),
    "ToGray": TransformInfo("photometric", _fixed(grayscale=1)),
    "ChannelShuffle": TransformInfo("photometric", _fixed(hue=180)),
    # noise and blur
    "GaussNoise": TransformInfo("noise_blur", lambda t, size: {"noise": _largest(t.std_range)}),
    "GaussianBlur": TransformInfo("noise_blur", _gaussian_blur),
    "Blur": TransformInfo("noise_blur", lambda t, size: {"blur": _largest(t.blur_limit)}),
    "MedianBlur": TransformInfo("noise_blur", lambda t, size: {"blur": _largest(t.blur_limit)}),
    "MotionBlur": TransformInfo("noise_blur", lambda t, size: {"blur": _largest(t.blur_limit)}),
    "Defocus": TransformInfo("noise_blur", lambda t, size: {"blur": 2 * _largest(t.radius) + 1}),
    "ImageCompression": TransformInfo(
        "noise_blur", lambda t, size: {"compression": 1 - min(t.quality_range) / 100}
    ),
    "CoarseDropout": TransformInfo("noise_blur", _fixed(erase=1)),
}


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_transform(name: str, group: str | None = None) -> TransformInfo:
    """The transform's description, or a ValueError naming what is supported."""
    info = TRANSFORMS.get(name)
    if info is None:
        supported = ", ".join(sorted(TRANSFORMS))
        raise ValueError(
            f"unknown transform '{name}'{_suggest(name, TRANSFORMS)} (supported: {supported})"
        )
    if group is not None and info.group != group:
        raise ValueError(f"'{name}' is a {info.group} transform, not {group}")
    return info


def check_remappable(name: str) -> TransformInfo:
    """A transform a remap may be declared for: known, and deterministic when it fires."""
    info = check_transform(name)
    if not info.remappable:
        movable = ", ".join(sorted(n for n, i in TRANSFORMS.items() if i.remappable))
        raise ValueError(
            f"{name} is random when it fires, so no single remap describes it "
            f"(remappable: {movable})"
        )
    return info


def check_effect(name: str) -> str:
    if name not in EFFECTS:
        raise ValueError(
            f"unknown effect '{name}'{_suggest(name, EFFECTS)} (effects: {', '.join(EFFECTS)})"
        )
    return name


def task_sensitivity(
    kind: str,
    sensitive_to: Mapping[str, float] | None = None,
    invariant_to: Iterable[str] = (),
) -> dict[str, float]:
    """Effect -> largest tolerated magnitude: the kind's defaults, with the task's declarations.

    A kind's defaults (``Kind.sensitivity``) cover what destroys the evidence a label is read
    from; symmetries (flips, quarter turns) are tolerated unless a task declares them.

    ``sensitive_to`` adds effects or sets their tolerance, looser or tighter than the kind's
    default (0 means "any amount changes the label"); ``invariant_to`` removes effects the
    label survives at any strength.
    """
    sensitive_to = dict(sensitive_to or {})
    invariant = set(invariant_to)
    for effect in (*sensitive_to, *invariant):
        check_effect(effect)
    both = sorted(invariant & set(sensitive_to))
    if both:
        raise ValueError(f"effects {both} are declared both sensitive and invariant")
    merged = {**get_kind(kind).sensitivity, **sensitive_to}
    return {e: float(v) for e, v in merged.items() if e not in invariant}


def expand_remap(mapping: Mapping[str, str], task_names: Sequence[str]) -> dict[str, str]:
    """``{source: destination}`` over task names, with ``*`` patterns expanded.

    ``{"*_left": "*_right"}`` maps every task ending in ``_left`` to the task with the same
    stem ending in ``_right``. Tasks not named keep their label. The result must be a
    permutation: each task receives exactly one label.
    """
    tasks = set(task_names)
    moves: dict[str, str] = {}
    for source, destination in mapping.items():
        if "*" in source or "*" in destination:
            if source.count("*") != 1 or destination.count("*") != 1:
                raise ValueError(
                    f"'{source}: {destination}': a pattern needs exactly one '*' on each side"
                )
            prefix, suffix = source.split("*")
            matched = [
                t
                for t in task_names
                if t.startswith(prefix)
                and t.endswith(suffix)
                and len(t) > len(prefix) + len(suffix)
            ]
            if not matched:
                raise ValueError(f"'{source}' matches no task (tasks: {', '.join(task_names)})")
            pairs = [
                (t, destination.replace("*", t[len(prefix) : len(t) - len(suffix)]))
                for t in matched
            ]
        else:
            pairs = [(source, destination)]
        for src, dst in pairs:
            for name in (src, dst):
                if name not in tasks:
                    raise ValueError(
                        f"'{source}: {destination}' names task '{name}', which does not exist "
                        f"(tasks: {', '.join(task_names)})"
                    )
            if src in moves and moves[src] != dst:
                raise ValueError(f"task '{src}' is moved to both '{moves[src]}' and '{dst}'")
            moves[src] = dst
    targets = list(moves.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
        raise ValueError(f"not a permutation: {doubled} would receive more than one label")
    unfilled = sorted(set(targets) - set(moves))
    if unfilled:
        raise ValueError(
            f"not a permutation: {unfilled} receive a label but give none away; "
            "every destination must also be a source (e.g. swap both ways)"
        )
    return {s: d for s, d in moves.items() if s != d}
