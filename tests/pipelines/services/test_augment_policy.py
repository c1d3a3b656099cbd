"""The shipped defect policy keeps labels true: checked against where the defects really are.

The generator reports, per task, the pixels its defects were drawn on. Each transform of the
shipped ``params.yaml`` is forced to fire on rendered samples together with those masks; the
labels after remapping must then match the image: every defect lies in one region third, the
task of (its defect type, that region) carries its rating, and the defect is still as visible
(contrast against its surroundings) as before, within the photometric tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mtl_models.augment.policy import Decision, TransformRequest, resolve_policy
from pipelines.config import load_params
from pipelines.data.sources.synthetic_defects import REGIONS, render_sample, sample_ratings
from tests.conftest import REPO

SHIPPED = load_params(REPO / "params.yaml")
SIZE = SHIPPED.data.synthetic.image_size
TASKS = list(SHIPPED.tasks)
N_SAMPLES, DRAWS = 30, 3
# A defect stays as visible when its contrast changes by at most 20% (the ordinal contrast
# tolerance is 15%) plus 4 grey levels of measurement noise (pixel noise over a few pixels).
# Corrosion is graded by its depth (38 + 9 x level grey levels), so a change of more than half
# a level step at the top level (5%, + 2 grey levels of noise over its many pixels) misgrades it.
VISIBLE_CHANGE, NOISE_FLOOR = 0.2, 4.0
DEPTH_CHANGE, DEPTH_NOISE = 0.05, 2.0


def render(i: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng([SHIPPED.data.synthetic.seed, i])
    ratings = sample_ratings(rng)
    masks: list[np.ndarray] = []
    image = render_sample(ratings, SIZE, rng, masks_out=masks)
    return image[..., None], ratings.astype(np.float32), masks


SAMPLES = [render(i) for i in range(N_SAMPLES)]


def contrast(image: np.ndarray, own: np.ndarray, defects: np.ndarray) -> float:
    """Mean grey-level difference between a defect's own pixels and the background around it."""
    ring = ndimage.binary_dilation(own, iterations=2) & ~defects
    return abs(float(image[..., 0][own].mean()) - float(image[..., 0][ring].mean()))


def own_pixels(masks: list[np.ndarray], t: int) -> np.ndarray:
    """Task ``t``'s defect pixels not covered by another defect (a scratch over a pit)."""
    others = np.any([m for k, m in enumerate(masks) if k != t], axis=0)
    return masks[t] & ~others


def violations(augment, sample: tuple) -> list[str]:
    """What is false about the remapped labels of one augmented sample."""
    image, labels, masks = sample
    out = augment.apply(image, labels, masks=masks)
    n_regions = len(REGIONS)
    implied = np.zeros_like(labels)
    found = []
    before_defects, after_defects = np.any(masks, axis=0), np.any(out.masks, axis=0)
    for t, mask in enumerate(out.masks):
        if labels[t] == 0:
            continue
        if not mask.any():
            found.append(f"{TASKS[t]}: its defect left the image")
            continue
        regions = set((np.nonzero(mask)[1] * n_regions // SIZE).tolist())
        if len(regions) > 1:
            found.append(f"{TASKS[t]}: its defect now straddles regions {sorted(regions)}")
            continue
        destination = (t // n_regions) * n_regions + regions.pop()
        implied[destination] = labels[t]
        own_before, own_after = own_pixels(masks, t), own_pixels(out.masks, t)
        if own_before.sum() < 3 or own_after.sum() < 3:
            continue  # hidden under another defect in the rendering itself
        before = contrast(image, own_before, before_defects)
        after = contrast(out.image, own_after, after_defects)
        graded_by_depth = TASKS[t].startswith("corrosion")
        change, floor = (
            (DEPTH_CHANGE, DEPTH_NOISE) if graded_by_depth else (VISIBLE_CHANGE, NOISE_FLOOR)
        )
        if abs(after - before) > change * before + floor:
            found.append(
                f"{TASKS[t]}: defect contrast {before:.0f} -> {after:.0f} after {out.fired}"
            )
    for t in np.nonzero(implied != out.labels)[0]:
        found.append(f"{TASKS[t]}: label {out.labels[t]:g} but the image shows {implied[t]:g}")
    return found


def all_violations(augment) -> list[str]:
    return [v for sample in SAMPLES for _ in range(DRAWS) for v in violations(augment, sample)]


def forced(decision: Decision) -> TransformRequest:
    return TransformRequest(decision.name, decision.group, {**decision.args, "p": 1.0})


def shipped_policy(requests, remaps=None):
    remaps = SHIPPED.augment.remaps if remaps is None else remaps
    return resolve_policy(requests, SHIPPED.task_sensitivity(), remaps, image_size=SIZE)


RESOLVED = shipped_policy(
    [
        TransformRequest(e.name, g, e.args(), where=f"augment.{g}[{i}]")
        for g, i, e in SHIPPED.augment.entries()
    ]
)


def test_the_shipped_policy_keeps_and_excludes_what_the_defect_data_needs():
    kept = {d.name for d in RESOLVED.kept}
    assert {"HorizontalFlip", "VerticalFlip", "GaussNoise"} <= kept
    assert {
        "RandomRotate90",
        "Affine",
        "RandomBrightnessContrast",
        "GaussianBlur",
        "CoarseDropout",
    } == {d.name for d in RESOLVED.excluded}
    flip = next(d for d in RESOLVED.kept if d.name == "HorizontalFlip")
    assert flip.remap == {
        f"{defect}_{a}": f"{defect}_{b}"
        for defect in ("scratches", "pits", "corrosion")
        for a, b in (("left", "right"), ("right", "left"))
    }


@pytest.mark.parametrize("decision", RESOLVED.kept, ids=lambda d: d.name)
def test_every_kept_transform_leaves_the_labels_describing_the_image(decision):
    augment = shipped_policy([forced(decision)]).build(seed=0)
    assert augment is not None, "forced to fire, it must still be kept"
    assert all_violations(augment) == []


@pytest.mark.parametrize("decision", RESOLVED.excluded, ids=lambda d: d.name)
def test_every_excluded_transform_would_have_corrupted_labels(decision):
    """The exclusions are real: forced through, each one makes some label false."""
    free = {t: {} for t in TASKS}  # resolve without sensitivities, so it builds
    augment = resolve_policy([forced(decision)], free, image_size=SIZE).build(seed=0)
    assert all_violations(augment) != []


def test_the_flip_without_its_remap_would_swap_left_and_right_labels():
    free = {t: {} for t in TASKS}
    flip = TransformRequest("HorizontalFlip", "geometric", {"p": 1.0})
    augment = resolve_policy([flip], free, image_size=SIZE).build(seed=0)
    found = all_violations(augment)
    assert found and all("_left" in v or "_right" in v for v in found)
