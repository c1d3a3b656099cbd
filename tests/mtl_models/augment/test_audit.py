"""The empirical label audit: a transform that changes what a label says is flagged, one that
keeps labels passes, and noise alone flags nothing.

The colour case trains a real (tiny) model on flowers-like images; the rest read labels with an
exact reader of the toy images, so each verdict is known in advance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_models.augment.audit import (
    AuditSettings,
    LabelAudit,
    audit_policy,
    transformed_copies,
)
from mtl_models.augment.effects import task_sensitivity
from mtl_models.augment.policy import TransformRequest, resolve_policy
from mtl_models.nn.architectures import HardSharing
from mtl_models.nn.backbones import ConvNet
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import MultiTaskImageDataset, make_loader
from mtl_models.train.prediction import predict
from mtl_models.train.trainer import Trainer
from mtl_models.weighting import build_weighting
from tests.toy_data import SHAPES, shape_colour_images

STRIPS = tuple(TaskSpec(f"a_{side}", "binary") for side in ("left", "center", "right"))
FLIP_SWAP = {"*_left": "*_right", "*_right": "*_left"}


def req(name: str, group: str, **args) -> TransformRequest:
    return TransformRequest(name, group, {"p": 0.5, **args}, where=f"test.{name}")


def undeclared(tasks) -> dict[str, dict[str, float]]:
    """Each kind's default sensitivities only: nothing declares flips or hue."""
    return {t.name: task_sensitivity(t.kind) for t in tasks}


def strip_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """12x12 grey images of three vertical strips, each bright (label 1) or dark (0)."""
    labels = np.random.default_rng(seed).integers(0, 2, (n, 3))
    strips = np.where(labels, 200, 60).astype(np.uint8)  # [n, 3]
    images = np.repeat(np.repeat(strips[:, None, :], 12, axis=1), 4, axis=2)
    return images[..., None], labels.astype(np.float32)


def read_strips(images: np.ndarray) -> np.ndarray:
    """The exact reader: is each strip bright?"""
    means = images[..., 0].reshape(len(images), 12, 3, 4).mean(axis=(1, 3))
    return (means > 128).astype(float)


def audit_strips(requests, remaps=None, predict=read_strips, **settings) -> LabelAudit:
    images, labels = strip_images(200)
    policy = resolve_policy(requests, undeclared(STRIPS), remaps, image_size=12)
    return audit_policy(policy, predict, images, labels, STRIPS, settings=AuditSettings(**settings))


def test_a_flip_without_its_remap_is_flagged_for_the_side_tasks_only():
    audit = audit_strips([req("HorizontalFlip", "geometric")])
    (flip,) = audit.transforms
    assert sorted(flip.flagged) == ["a_left", "a_right"]  # the centre strip stays in place
    left = flip.tasks["a_left"]
    assert (left.clean, left.transformed) == (1.0, pytest.approx(0.5, abs=0.1))
    assert flip.tasks["a_center"].drop == 0.0 and not flip.tasks["a_center"].flagged
    assert flip.verdict.startswith("changes labels: a_")
    assert audit.summary() == f"flagged HorizontalFlip ({', '.join(flip.flagged)}); 1 audited"


def test_the_declared_remap_makes_the_same_flip_pass():
    audit = audit_strips([req("HorizontalFlip", "geometric")], {"HorizontalFlip": FLIP_SWAP})
    (flip,) = audit.transforms
    assert flip.remap == {"a_left": "a_right", "a_right": "a_left"}
    assert flip.flagged == [] and all(s.drop == 0.0 for s in flip.tasks.values())
    assert flip.verdict == "no task's score drops beyond noise (largest drop +0.000, a_left)"


def test_a_vertical_flip_keeps_strip_labels():
    (flip,) = audit_strips([req("VerticalFlip", "geometric")]).transforms
    assert flip.flagged == [] and max(s.drop for s in flip.tasks.values()) == 0.0


def noisy_reader(error: float, seed: int = 0):
    """The exact reader with ``error`` of its answers flipped at random, afresh on every call:
    a probe whose score varies from one look to the next."""
    rng = np.random.default_rng(seed)

    def read(images: np.ndarray) -> np.ndarray:
        truth = read_strips(images)
        return np.where(rng.random(truth.shape) < error, 1 - truth, truth)

    return read


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_noise_alone_flags_nothing_but_is_within_the_interval(seed):
    audit = audit_strips(
        [req("VerticalFlip", "geometric")], predict=noisy_reader(0.2, seed), seed=seed
    )
    (flip,) = audit.transforms
    assert flip.flagged == []
    for shift in flip.tasks.values():
        assert shift.measured and 0.5 < shift.clean < 0.9
        assert shift.bound < shift.drop < shift.bound + 0.25  # an interval of a few points


def test_a_probe_at_its_baseline_measures_nothing():
    audit = audit_strips(
        [req("HorizontalFlip", "geometric")], predict=lambda x: np.zeros((len(x), 3))
    )
    (flip,) = audit.transforms
    assert flip.flagged == [] and not any(s.measured for s in flip.tasks.values())
    assert flip.verdict == "not measured: the probe beats no task's majority baseline"


def test_a_flip_is_drawn_once_and_a_random_transform_repeats_times():
    images, labels = strip_images(20)
    policy = resolve_policy(
        [req("HorizontalFlip", "geometric"), req("GaussNoise", "noise_blur", std_range=(0.1, 0.2))],
        undeclared(STRIPS),
        {"HorizontalFlip": FLIP_SWAP},
        image_size=12,
    )
    flip, noise = policy.kept
    (copy,) = transformed_copies(flip, policy, images, labels, repeats=3, seed=0)
    assert np.array_equal(copy[0], images[:, :, ::-1])  # every image flipped: p forced to 1
    assert np.array_equal(copy[1], labels[:, [2, 1, 0]])  # and its labels remapped
    copies = transformed_copies(noise, policy, images, labels, repeats=3, seed=0)
    assert len(copies) == 3 and not np.array_equal(copies[0][0], copies[1][0])
    again = transformed_copies(noise, policy, images, labels, repeats=3, seed=0)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(copies, again, strict=True))


def test_the_report_holds_every_figure():
    report = audit_strips([req("HorizontalFlip", "geometric")]).to_dict()
    assert report["flagged"] == ["HorizontalFlip"]
    assert report["settings"] == {
        "max_drop": 0.15,
        "confidence": 0.95,
        "repeats": 2,
        "groups": 20,
        "seed": 0,
    }
    (flip,) = report["transforms"]
    assert flip["effects"] == {"hflip": 1.0} and sorted(flip["flagged"]) == ["a_left", "a_right"]
    left = flip["tasks"]["a_left"]
    assert set(left) == {
        "metric",
        "clean",
        "transformed",
        "baseline",
        "drop",
        "bound",
        "drop_share",
        "bound_share",
        "measured",
        "flagged",
    }
    assert left["metric"] == "balanced_accuracy" and left["bound_share"] > 0.5


def test_tasks_in_another_order_than_the_policy_fail():
    images, labels = strip_images(10)
    policy = resolve_policy([req("VerticalFlip", "geometric")], undeclared(STRIPS), image_size=12)
    with pytest.raises(ValueError, match="policy tasks"):
        audit_policy(policy, read_strips, images, labels, STRIPS[::-1])


# ------------------------------------------------------------ a real model, a colour task

COLOUR_TASKS = (
    TaskSpec("shape", "classification", classes=SHAPES),
    TaskSpec("colour", "classification", classes=("red", "green", "blue")),
)


def colour_audit(seed: int) -> LabelAudit:
    """A tiny ConvNet learns shape and colour (8 epochs); a hue shift of up to 120 degrees
    and a horizontal flip (shapes are mirror-symmetric) are audited on held-out images."""
    torch.manual_seed(seed)
    train = shape_colour_images(300, 16, seed=10 + seed)
    images, labels = shape_colour_images(150, 16, seed=20 + seed)
    model = HardSharing(COLOUR_TASKS, ConvNet(3, width=8, depth=2, pool_size=2), 1, 16)
    trainer = Trainer(model, build_weighting("equal", ["shape", "colour"]), epochs=8, lr=1e-2)
    trainer.fit(
        make_loader(MultiTaskImageDataset(*train), 32, shuffle=True, seed=seed),
        make_loader(MultiTaskImageDataset(images, labels), 64, shuffle=False),
    )

    def probe(x: np.ndarray) -> np.ndarray:
        data = MultiTaskImageDataset(x, np.zeros((len(x), 2), np.float32))
        loader = make_loader(data, 256, shuffle=False)
        return predict(model, loader, torch.device("cpu")).predictions

    hue = req("HueSaturationValue", "photometric", hue_shift_limit=60, sat_shift_limit=0)
    policy = resolve_policy(
        [hue, req("HorizontalFlip", "geometric")], undeclared(COLOUR_TASKS), image_size=16
    )
    assert [d.reason for d in policy.kept] == ["no sensitivity declared"] * 2
    return audit_policy(
        policy, probe, images, labels, COLOUR_TASKS, settings=AuditSettings(seed=seed)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_a_hue_shift_is_flagged_on_the_colour_task_and_a_mirror_passes(seed):
    audit = colour_audit(seed)
    hue, flip = audit.transforms
    colour = hue.tasks["colour"]
    assert colour.clean > 0.9 and colour.flagged  # the probe reads colour; the shift moves it
    assert colour.bound > 0.5 * colour.skill
    assert hue.verdict.startswith("changes labels:") and "colour" in hue.verdict
    assert flip.flagged == []  # a mirrored circle, square or upward triangle is the same shape
    assert flip.tasks["colour"].drop == pytest.approx(0.0, abs=0.02)
