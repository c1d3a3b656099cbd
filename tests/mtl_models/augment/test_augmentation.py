"""Label-safe augmentation: the resolver's decisions, label remaps, seeding in loader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_models.augment.effects import task_sensitivity
from mtl_models.augment.policy import PolicyError, TransformRequest, resolve_policy
from mtl_models.train.loaders import MultiTaskImageDataset, make_loader
from tests.toy_data import COLOURS, dominant_colour, shape_colour_images

SIDES = ("a_left", "a_center", "a_right")
FLIP_SWAP = {"*_left": "*_right", "*_right": "*_left"}


def region_sensitivity(tasks=SIDES) -> dict[str, dict[str, float]]:
    """Left/right tasks change under a horizontal flip; centre tasks do not."""
    return {
        t: task_sensitivity("ordinal", {} if t.endswith("center") else {"hflip": 0}) for t in tasks
    }


def req(name: str, group: str, **args) -> TransformRequest:
    return TransformRequest(name, group, args, where=f"test.{name}")


def by_name(policy) -> dict:
    return {d.name: d for d in policy.decisions}


def test_safe_transforms_kept_unsafe_excluded_with_the_tasks_and_effect():
    policy = resolve_policy(
        [
            req("VerticalFlip", "geometric"),
            req("HorizontalFlip", "geometric"),
            req("GaussianBlur", "noise_blur", sigma_limit=(0.5, 3.0)),
        ],
        region_sensitivity(),
        image_size=32,
    )
    d = by_name(policy)
    # kept because no task objects, and said so: nothing declared it safe
    assert d["VerticalFlip"].kept and d["VerticalFlip"].reason == "no sensitivity declared"
    flip = d["HorizontalFlip"]
    assert not flip.kept
    assert "hflip" in flip.reason and "a_left" in flip.reason and "a_right" in flip.reason
    assert "a_center" not in flip.reason
    assert "declare a remap" in flip.reason
    blur = d["GaussianBlur"]
    assert not blur.kept and blur.effects == {"blur": 21.0}
    assert "all 3 tasks" in blur.reason and "at most 5" in blur.reason
    assert [k.name for k in policy.kept] == ["VerticalFlip"]
    report = policy.to_dict()
    assert [e["name"] for e in report["excluded"]] == ["HorizontalFlip", "GaussianBlur"]


def test_kept_transforms_say_whether_a_declaration_or_only_silence_keeps_them():
    """A verdict resting on no declaration is never called "safe"."""
    within = {t: {"hflip": 0.0, "rotate": 10.0} for t in ("a", "b")}
    partly = {"a": {"hflip": 0.0, "rotate": 10.0}, "b": {}}
    requests = [req("Affine", "geometric", rotate=(-5, 5)), req("VerticalFlip", "geometric")]
    everyone = by_name(resolve_policy(requests, within, image_size=32))
    assert everyone["Affine"].reason == "within every task's declared tolerance"
    assert everyone["VerticalFlip"].reason == "no sensitivity declared"
    some = by_name(resolve_policy(requests, partly, image_size=32))
    assert some["Affine"].reason == (
        "within the declared tolerance of a; no sensitivity declared by b"
    )


def test_a_declared_remap_keeps_the_flip_and_records_the_moves():
    policy = resolve_policy(
        [req("HorizontalFlip", "geometric")],
        region_sensitivity(),
        {"HorizontalFlip": FLIP_SWAP},
        image_size=32,
    )
    (flip,) = policy.kept
    assert flip.remap == {"a_left": "a_right", "a_right": "a_left"}
    assert "a_left->a_right" in flip.reason


def test_a_remap_that_leaves_a_sensitive_task_in_place_does_not_make_the_flip_safe():
    tasks = ("a_left", "a_right", "b_left", "b_right")
    policy = resolve_policy(
        [req("HorizontalFlip", "geometric")],
        region_sensitivity(tasks),
        {"HorizontalFlip": {"a_left": "a_right", "a_right": "a_left"}},
        image_size=32,
    )
    (flip,) = policy.excluded
    assert "does not move b_left, b_right" in flip.reason
    assert policy.build() is None


def test_magnitude_decides_within_a_tolerance():
    sensitivity = {"grade": task_sensitivity("ordinal")}  # blur up to a 5 px kernel
    policy = resolve_policy(
        [
            req("Blur", "noise_blur", blur_limit=(3, 5)),
            req("MedianBlur", "noise_blur", blur_limit=(3, 7)),
        ],
        sensitivity,
        image_size=32,
    )
    assert [d.kept for d in policy.decisions] == [True, False]
    assert "blur 7" in policy.decisions[1].reason


@pytest.mark.parametrize(
    ("request_", "remaps", "match"),
    [
        (
            req("GaussNoise", "noise_blur", std_range=(0.5, 0.1)),
            {},
            r"test\.GaussNoise: GaussNoise",
        ),
        (req("HorizontalFlp", "geometric"), {}, "did you mean 'HorizontalFlip'"),
        (req("GaussNoise", "geometric"), {}, "is a noise_blur transform, not geometric"),
        (
            req("VerticalFlip", "geometric"),
            {"RandomRotate90": {"a_left": "a_right"}},
            "augment.remaps.RandomRotate90: RandomRotate90 is random",
        ),
        (
            req("VerticalFlip", "geometric"),
            {"HorizontalFlip": {"a_left": "a_middle"}},
            "augment.remaps.HorizontalFlip: .*'a_middle', which does not exist",
        ),
        (
            req("VerticalFlip", "geometric"),
            {"HorizontalFlip": {"a_left": "a_right"}},
            "not a permutation",
        ),
    ],
)
def test_bad_entries_fail_naming_the_entry(request_, remaps, match):
    with pytest.raises(PolicyError, match=match):
        resolve_policy([request_], region_sensitivity(), remaps, image_size=32)


def test_disabled_policy_reports_but_builds_nothing():
    policy = resolve_policy(
        [req("VerticalFlip", "geometric")], region_sensitivity(), image_size=32, enabled=False
    )
    assert policy.build() is None and policy.kept == []
    assert policy.to_dict()["enabled"] is False
    assert "off" in policy.describe()


def quadrant_image(size: int = 8) -> np.ndarray:
    image = np.zeros((size, size, 1), np.uint8)
    h = size // 2
    image[:h, :h], image[:h, h:], image[h:, :h], image[h:, h:] = 10, 20, 30, 40
    return image


QUADRANTS = ("tl", "tr", "bl", "br")
QUADRANT_REMAPS = {
    "HorizontalFlip": {"tl": "tr", "tr": "tl", "bl": "br", "br": "bl"},
    "VerticalFlip": {"tl": "bl", "bl": "tl", "tr": "br", "br": "tr"},
}


def quadrant_policy(*names: str, p: float = 1.0):
    flips = task_sensitivity("classification", {"hflip": 0, "vflip": 0})
    sensitivity = dict.fromkeys(QUADRANTS, flips)
    return resolve_policy(
        [req(n, "geometric", p=p) for n in names], sensitivity, QUADRANT_REMAPS, image_size=8
    )


def test_a_flip_that_fires_mirrors_the_image_and_permutes_the_labels():
    augment = quadrant_policy("HorizontalFlip").build(seed=0)
    image, labels = quadrant_image(), np.array([1.0, 2.0, np.nan, 4.0], np.float32)
    out = augment.apply(image, labels)
    assert out.fired == ["HorizontalFlip"]
    np.testing.assert_array_equal(out.image, image[:, ::-1])
    np.testing.assert_array_equal(out.labels, [2.0, 1.0, 4.0, np.nan])  # NaN moves too


def test_remaps_of_several_flips_compose_so_labels_follow_the_pixels():
    augment = quadrant_policy("HorizontalFlip", "VerticalFlip", p=0.5).build(seed=3)
    image = quadrant_image()
    labels = np.array([10, 20, 30, 40], np.float32)  # each label is its quadrant's value
    seen = set()
    for _ in range(40):
        out = augment.apply(image, labels)
        seen.add(tuple(out.fired))
        h = 4
        corners = [out.image[:h, :h], out.image[:h, h:], out.image[h:, :h], out.image[h:, h:]]
        assert [int(c.mean()) for c in corners] == out.labels.tolist()
    assert seen == {(), ("HorizontalFlip",), ("VerticalFlip",), ("HorizontalFlip", "VerticalFlip")}


def test_same_seed_replays_and_reseed_changes_the_stream():
    policy = resolve_policy(
        [req("GaussNoise", "noise_blur", std_range=(0.05, 0.1), p=1.0)],
        {"t": task_sensitivity("classification")},
        image_size=8,
    )
    image, labels = np.full((8, 8, 1), 128, np.uint8), np.zeros(1, np.float32)
    first, second = policy.build(seed=5), policy.build(seed=5)
    a = [first(image, labels)[0] for _ in range(3)]
    b = [second(image, labels)[0] for _ in range(3)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])
    second.reseed(6)
    assert not np.array_equal(second(image, labels)[0], first(image, labels)[0])


def noisy_epochs(num_workers: int, seed: int, epochs: int = 2) -> list[torch.Tensor]:
    policy = resolve_policy(
        [req("GaussNoise", "noise_blur", std_range=(0.05, 0.1), p=1.0)],
        {"t": task_sensitivity("classification")},
        image_size=8,
    )
    images = np.full((8, 8, 8, 1), 128, np.uint8)  # identical inputs: outputs differ by noise
    dataset = MultiTaskImageDataset(images, np.zeros((8, 1)), transform=policy.build(seed=0))
    loader = make_loader(dataset, 4, shuffle=True, seed=seed, num_workers=num_workers)
    return [batch for _ in range(epochs) for batch, _ in loader]


def test_loader_workers_draw_their_own_augmentations_every_epoch_reproducibly():
    batches = noisy_epochs(num_workers=2, seed=11)
    samples = torch.cat(batches).flatten(1)
    assert len(samples) == 16  # 8 images x 2 epochs
    distinct = {tuple(s.tolist()) for s in samples}
    assert len(distinct) == 16  # no worker or epoch repeats another's noise
    again = torch.cat(noisy_epochs(num_workers=2, seed=11)).flatten(1)
    torch.testing.assert_close(again, samples)  # same loader seed, same augmentations


def flowers_policy():
    sensitivity = {
        "shape": task_sensitivity("classification"),
        "colour": task_sensitivity("classification", {"hue": 0, "saturation": 0, "grayscale": 0}),
    }
    requests = [
        req("HorizontalFlip", "geometric"),
        req("VerticalFlip", "geometric"),
        req("RandomRotate90", "geometric"),
        req("Rotate", "geometric", limit=30),
        req("RandomBrightnessContrast", "photometric", brightness_limit=0.15, contrast_limit=0.15),
        req("HueSaturationValue", "photometric"),
        req("ColorJitter", "photometric"),
        req("ToGray", "photometric"),
        req("ChannelShuffle", "photometric"),
    ]
    return resolve_policy(requests, sensitivity, image_size=32)


def test_flowers_like_data_colour_transforms_excluded_flips_and_rotations_kept():
    policy = flowers_policy()
    assert [d.name for d in policy.kept] == [
        "HorizontalFlip",
        "VerticalFlip",
        "RandomRotate90",
        "Rotate",
        "RandomBrightnessContrast",
    ]
    assert [d.name for d in policy.excluded] == [
        "HueSaturationValue",
        "ColorJitter",
        "ToGray",
        "ChannelShuffle",
    ]
    for decision in policy.excluded:
        assert "colour" in decision.reason and "shape" not in decision.reason


def forced(decision) -> TransformRequest:
    return TransformRequest(decision.name, decision.group, {**decision.args, "p": 1.0})


def test_flowers_like_kept_transforms_keep_the_colour_and_excluded_ones_change_it():
    images, labels = shape_colour_images(30, 32, seed=2)
    assert [dominant_colour(im) for im in images] == labels[:, 1].astype(int).tolist()
    policy = flowers_policy()
    sensitivity = {"shape": {}, "colour": {}}  # resolve each alone, forced to fire
    pairs = list(zip(images, labels, strict=True))
    for decision in policy.kept:
        augment = resolve_policy([forced(decision)], sensitivity, image_size=32).build(seed=1)
        colours = [dominant_colour(augment(im, lab)[0]) for im, lab in pairs]
        assert colours == labels[:, 1].astype(int).tolist(), decision.name
    shuffle = next(d for d in policy.excluded if d.name == "ChannelShuffle")
    augment = resolve_policy([forced(shuffle)], sensitivity, image_size=32).build(seed=1)
    changed = sum(dominant_colour(augment(im, lab)[0]) != lab[1] for im, lab in pairs)
    assert changed >= len(images) // 2, "the excluded transform really corrupts colour labels"
    assert len(COLOURS) == 3
