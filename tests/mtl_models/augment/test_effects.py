"""Effects vocabulary: transform descriptions, task sensitivities and label remaps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mtl_models.augment.policy  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before albumentations)
from mtl_models.augment.effects import (
    BOOLEAN_EFFECTS,
    EFFECTS,
    GROUPS,
    TRANSFORMS,
    check_effect,
    check_transform,
    expand_remap,
    task_sensitivity,
)
from mtl_models.kinds import KINDS

import albumentations as A  # isort: skip

# ---------------------------------------------------------------- task_sensitivity

ORDINAL_DEFAULTS = KINDS.get("ordinal").sensitivity


@pytest.mark.parametrize("kind", KINDS.names())
def test_defaults_are_the_kinds_sensitivity(kind):
    assert task_sensitivity(kind) == KINDS.get(kind).sensitivity
    assert all(isinstance(v, float) for v in task_sensitivity(kind).values())


def test_kinds_have_different_defaults():
    # Ratings lose their evidence to a crop; a class does not (only to an extreme one).
    assert task_sensitivity("ordinal")["crop"] == 0.0
    assert task_sensitivity("classification")["crop"] == 0.5
    assert "scale" in task_sensitivity("regression")
    assert "scale" not in task_sensitivity("ordinal")


def test_sensitive_to_adds_and_tightens_effects():
    got = task_sensitivity("ordinal", {"hflip": 0, "blur": 3})
    assert got["hflip"] == 0.0  # added
    assert got["blur"] == 3.0  # tightened from the ordinal default of 5
    assert got["noise"] == ORDINAL_DEFAULTS["noise"]  # untouched defaults stay
    assert set(got) == set(ORDINAL_DEFAULTS) | {"hflip"}
    # The call does not modify the shared defaults.
    assert "hflip" not in ORDINAL_DEFAULTS
    assert ORDINAL_DEFAULTS["blur"] == 5


def test_invariant_to_lifts_a_default():
    got = task_sensitivity("ordinal", invariant_to=["crop", "erase"])
    assert "crop" not in got and "erase" not in got
    assert got["blur"] == 5.0
    assert "crop" in ORDINAL_DEFAULTS  # defaults themselves untouched


def test_effect_both_sensitive_and_invariant_is_refused():
    with pytest.raises(ValueError, match="both sensitive and invariant") as err:
        task_sensitivity("binary", {"hflip": 0, "blur": 2}, invariant_to=["hflip"])
    assert "'hflip'" in str(err.value)
    assert "'blur'" not in str(err.value)


@pytest.mark.parametrize(
    ("sensitive_to", "invariant_to"),
    [({"hlfip": 0}, ()), (None, ["hlfip"])],
)
def test_unknown_effect_suggests_the_close_one(sensitive_to, invariant_to):
    with pytest.raises(ValueError, match="unknown effect 'hlfip'; did you mean 'hflip'"):
        task_sensitivity("ordinal", sensitive_to, invariant_to)


def test_check_effect():
    assert check_effect("rotate") == "rotate"
    with pytest.raises(ValueError) as err:
        check_effect("zzzzzz")
    message = str(err.value)
    assert "unknown effect 'zzzzzz'" in message
    assert "did you mean" not in message  # nothing is close
    assert "hflip" in message and "erase" in message  # the vocabulary is listed


def test_boolean_effects_are_effects():
    assert BOOLEAN_EFFECTS.issubset(EFFECTS)
    assert {group for group, _ in EFFECTS.values()} == set(GROUPS)


# ---------------------------------------------------------------- check_transform


def test_unknown_transform_suggests_and_lists_supported():
    with pytest.raises(ValueError) as err:
        check_transform("HorizontalFlp")
    message = str(err.value)
    assert "unknown transform 'HorizontalFlp'; did you mean 'HorizontalFlip'?" in message
    assert "supported: " in message
    for name in ("Affine", "GaussNoise", "VerticalFlip", "CoarseDropout"):
        assert name in message


def test_transform_in_the_wrong_group_names_its_group():
    assert check_transform("GaussNoise", "noise_blur") is TRANSFORMS["GaussNoise"]
    assert check_transform("GaussNoise") is TRANSFORMS["GaussNoise"]
    with pytest.raises(ValueError, match="'GaussNoise' is a noise_blur transform, not geometric"):
        check_transform("GaussNoise", "geometric")
    with pytest.raises(ValueError, match="'HorizontalFlip' is a geometric transform"):
        check_transform("HorizontalFlip", "photometric")


def test_only_deterministic_flips_are_remappable():
    remappable = {name for name, info in TRANSFORMS.items() if info.remappable}
    assert remappable == {"HorizontalFlip", "VerticalFlip", "Transpose"}


def _default(name: str) -> A.BasicTransform:
    kwargs = {"size": (64, 64)} if name == "RandomResizedCrop" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. ShiftScaleRotate's "use Affine instead"
        return getattr(A, name)(**kwargs)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_transform_reports_known_effects_of_its_own_group(name):
    info = TRANSFORMS[name]
    assert info.group in GROUPS
    effects = info.effects(_default(name), 64)
    assert effects, f"{name} reports no effect at all"
    for effect, magnitude in effects.items():
        assert effect in EFFECTS, f"{name} reports unknown effect {effect!r}"
        assert EFFECTS[effect][0] == info.group, f"{name} ({info.group}) reports {effect!r}"
        assert magnitude >= 0
        if effect in BOOLEAN_EFFECTS:
            assert magnitude == 1


# ---------------------------------------------------------------- magnitudes from arguments


def _effects(name: str, transform: A.BasicTransform, size: int = 64) -> dict[str, float]:
    return TRANSFORMS[name].effects(transform, size)


def test_affine_magnitudes_come_from_its_arguments():
    got = _effects("Affine", A.Affine(rotate=(-10, 10), translate_percent=(-0.05, 0.05)))
    assert got["rotate"] == pytest.approx(10)
    assert got["translate"] == pytest.approx(0.05)
    assert got["scale"] == pytest.approx(0)
    assert got["shear"] == pytest.approx(0)
    got = _effects("Affine", A.Affine(scale=(0.8, 1.1), shear=(-5, 7)))
    assert got["scale"] == pytest.approx(0.2)
    assert got["shear"] == pytest.approx(7)
    assert got["rotate"] == pytest.approx(0)


def test_pixel_translation_is_a_fraction_of_the_image_side():
    transform = A.Affine(translate_px=(-8, 8))
    assert _effects("Affine", transform, 64)["translate"] == pytest.approx(0.125)
    assert _effects("Affine", transform, 32)["translate"] == pytest.approx(0.25)


def test_rotate_limit_is_read():
    assert _effects("Rotate", A.Rotate(limit=20))["rotate"] == pytest.approx(20)
    assert _effects("SafeRotate", A.SafeRotate(limit=(-5, 12)))["rotate"] == pytest.approx(12)


def test_colour_magnitudes_come_from_their_arguments():
    assert _effects("ColorJitter", A.ColorJitter(hue=0.1))["hue"] == pytest.approx(36)
    got = _effects("ColorJitter", A.ColorJitter(brightness=0.3, contrast=0, saturation=0.1))
    assert got["brightness"] == pytest.approx(0.3)
    assert got["contrast"] == pytest.approx(0)
    assert got["saturation"] == pytest.approx(0.1)
    hsv = _effects("HueSaturationValue", A.HueSaturationValue(hue_shift_limit=10))
    assert hsv["hue"] == pytest.approx(20)
    got = _effects(
        "RandomBrightnessContrast",
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=(-0.05, 0.3)),
    )
    assert got == pytest.approx({"brightness": 0.1, "contrast": 0.3})
    gamma = _effects("RandomGamma", A.RandomGamma(gamma_limit=(90, 110)))
    assert gamma == pytest.approx({"gamma": 0.1})


def test_blur_kernel_is_read_or_derived_from_sigma():
    derived = _effects("GaussianBlur", A.GaussianBlur(blur_limit=0, sigma_limit=(0.5, 1.0)))
    assert derived == {"blur": 7.0}  # int(1.0 * 3.5) * 2 + 1
    explicit = _effects("GaussianBlur", A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.5, 1.0)))
    assert explicit == {"blur": 5.0}
    assert _effects("MedianBlur", A.MedianBlur(blur_limit=(3, 5))) == {"blur": 5.0}


def test_blur_kernel_derived_from_sigma_counts_when_the_limit_range_includes_zero():
    # blur_limit 3 means (0, 3): a drawn 0 derives the kernel from sigma, up to 7 here
    transform = A.GaussianBlur(blur_limit=3, sigma_limit=(0.9, 1.0), p=1)
    transform.set_random_seed(0)
    image = np.zeros((16, 16, 3), np.uint8)
    drawn = {
        len(transform.get_params_dependent_on_data({}, {"image": image})["kernel"])
        for _ in range(40)
    }
    assert max(drawn) == 7  # what albumentations actually applies at most
    assert _effects("GaussianBlur", transform)["blur"] >= max(drawn)


def test_noise_and_compression_magnitudes():
    noise = _effects("GaussNoise", A.GaussNoise(std_range=(0.01, 0.03)))
    assert noise == pytest.approx({"noise": 0.03})
    jpeg = _effects("ImageCompression", A.ImageCompression(quality_range=(70, 95)))
    assert jpeg == pytest.approx({"compression": 0.3})


def test_resized_crop_reports_the_side_cut_away():
    got = _effects("RandomResizedCrop", A.RandomResizedCrop(size=(64, 64), scale=(0.64, 1.0)))
    assert got["crop"] == pytest.approx(0.2)  # sqrt(0.64) = 0.8 of the side survives
    assert got["scale"] == pytest.approx(0.25)  # and is zoomed back by 1 / 0.8
    square = A.RandomResizedCrop(size=(64, 64), scale=(0.64, 1.0), ratio=(1.0, 1.0))
    assert _effects("RandomResizedCrop", square)["warp"] == pytest.approx(0)


# ---------------------------------------------------------------- expand_remap

TASKS = ["a_left", "a_center", "a_right", "b_left", "b_center", "b_right"]
SWAP = {"*_left": "*_right", "*_right": "*_left"}


def test_patterns_swap_left_and_right_and_leave_centres():
    assert expand_remap(SWAP, TASKS) == {
        "a_left": "a_right",
        "b_left": "b_right",
        "a_right": "a_left",
        "b_right": "b_left",
    }


def test_literal_names_and_identity_moves():
    assert expand_remap({"a_left": "a_right", "a_right": "a_left"}, TASKS) == {
        "a_left": "a_right",
        "a_right": "a_left",
    }
    # Moving a task to itself is allowed and not reported as a move.
    assert expand_remap({"a_center": "a_center"}, TASKS) == {}
    assert expand_remap({}, TASKS) == {}


def test_a_cycle_of_three_is_a_permutation():
    cycle = {"a_left": "a_center", "a_center": "a_right", "a_right": "a_left"}
    assert expand_remap(cycle, TASKS) == cycle


def test_unknown_task_is_named_with_its_entry():
    with pytest.raises(ValueError) as err:
        expand_remap({"a_left": "c_right", "c_right": "a_left"}, TASKS)
    message = str(err.value)
    assert "'a_left: c_right' names task 'c_right', which does not exist" in message
    assert "tasks: a_left, a_center" in message


def test_pattern_destination_that_does_not_exist_is_named():
    with pytest.raises(ValueError, match="'a_middle', which does not exist"):
        expand_remap({"*_center": "*_middle"}, TASKS)


def test_one_way_move_is_not_a_permutation():
    with pytest.raises(ValueError, match=r"not a permutation: \['a_right'\] receive a label"):
        expand_remap({"a_left": "a_right"}, TASKS)


def test_two_sources_into_one_destination_is_not_a_permutation():
    with pytest.raises(ValueError, match=r"not a permutation: \['a_right'\] would receive more"):
        expand_remap({"a_left": "a_right", "b_left": "a_right"}, TASKS)


@pytest.mark.parametrize(
    "mapping",
    [{"*_*": "*_*"}, {"*_left": "a_right"}, {"*_left": "**_right"}],
)
def test_a_pattern_needs_exactly_one_star_on_each_side(mapping):
    with pytest.raises(ValueError, match="exactly one '\\*' on each side"):
        expand_remap(mapping, TASKS)


def test_a_pattern_matching_no_task_is_refused():
    with pytest.raises(ValueError, match="'\\*_top' matches no task"):
        expand_remap({"*_top": "*_bottom", "*_bottom": "*_top"}, TASKS)


def test_a_task_moved_to_two_places_is_refused():
    with pytest.raises(ValueError, match="'a_left' is moved to both 'a_right' and 'a_center'"):
        expand_remap({"*_left": "*_right", "a_left": "a_center"}, TASKS)
