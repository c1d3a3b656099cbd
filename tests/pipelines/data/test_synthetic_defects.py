"""synthetic: determinism, label distribution and severity that is visible in the pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipelines.data.sources.synthetic_defects import (
    DEFECTS,
    LEVEL_SHARES,
    N_LEVELS,
    REGIONS,
    defect_task_names,
    generate_defect_dataset,
    render_sample,
)

SIZE = 64
SEEDS = range(4)
# Which way each defect moves pixels, and so which count measures it.
SIGN = {"scratches": "bright", "pits": "dark", "corrosion": "dark"}


@pytest.fixture(scope="module")
def ratings_600() -> np.ndarray:
    return generate_defect_dataset(600, image_size=24, seed=0)[1]


def render_one(defect: str, region: int, level: int, seed: int) -> np.ndarray:
    ratings = np.zeros(len(DEFECTS) * len(REGIONS), dtype=np.int64)
    ratings[DEFECTS.index(defect) * len(REGIONS) + region] = level
    return render_sample(ratings, SIZE, np.random.default_rng(seed))


def counts_per_third(image: np.ndarray, sign: str) -> list[int]:
    """Pixels far (50 grey levels) from the image median, in the left, center and right thirds.

    Clean metal varies by about +-25 around its median; scratches are drawn at 225 and pits
    85 below the surface, so the threshold separates defect pixels from the background.
    """
    median = np.median(image)
    far = image > median + 50 if sign == "bright" else image < median - 50
    edges = [0, SIZE // 3, 2 * SIZE // 3, SIZE]
    return [int(far[:, a:b].sum()) for a, b in itertools.pairwise(edges)]


def test_task_names_are_defect_major() -> None:
    names = defect_task_names()
    assert len(names) == 9
    assert names[:4] == ["scratches_left", "scratches_center", "scratches_right", "pits_left"]
    assert names[-1] == "corrosion_right"


def test_shapes_and_dtypes() -> None:
    images, ratings = generate_defect_dataset(5, image_size=32, seed=1)
    assert images.shape == (5, 32, 32)
    assert images.dtype == np.uint8
    assert ratings.shape == (5, 9)
    assert ratings.dtype == np.int64
    assert ratings.min() >= 0 and ratings.max() < N_LEVELS


def test_deterministic_for_a_seed_and_seed_matters() -> None:
    images_a, ratings_a = generate_defect_dataset(6, image_size=24, seed=7)
    images_b, ratings_b = generate_defect_dataset(6, image_size=24, seed=7)
    np.testing.assert_array_equal(images_a, images_b)
    np.testing.assert_array_equal(ratings_a, ratings_b)
    images_c, _ = generate_defect_dataset(6, image_size=24, seed=8)
    assert not np.array_equal(images_a, images_c)


def test_sample_i_does_not_depend_on_n_samples() -> None:
    small_images, small_ratings = generate_defect_dataset(3, image_size=24, seed=5)
    big_images, big_ratings = generate_defect_dataset(8, image_size=24, seed=5)
    np.testing.assert_array_equal(big_images[:3], small_images)
    np.testing.assert_array_equal(big_ratings[:3], small_ratings)


@pytest.mark.parametrize(("n_samples", "image_size"), [(0, 32), (4, 23)])
def test_invalid_arguments_raise(n_samples: int, image_size: int) -> None:
    with pytest.raises(ValueError, match="n_samples >= 1 and image_size >= 24"):
        generate_defect_dataset(n_samples, image_size)


def test_ratings_are_skewed_towards_clean(ratings_600: np.ndarray) -> None:
    for t, name in enumerate(defect_task_names()):
        counts = np.bincount(ratings_600[:, t], minlength=N_LEVELS)
        assert counts.argmax() == 0, name
        assert counts.argmin() == N_LEVELS - 1, name
    shares = np.bincount(ratings_600.ravel(), minlength=N_LEVELS) / ratings_600.size
    assert bool(np.all(np.diff(shares) < 0))
    np.testing.assert_allclose(shares, LEVEL_SHARES, atol=0.03)


def test_tasks_are_positively_correlated(ratings_600: np.ndarray) -> None:
    corr = np.corrcoef(ratings_600.T)
    off_diagonal = corr[~np.eye(9, dtype=bool)]
    assert off_diagonal.min() > 0.1
    same_defect = np.kron(np.eye(3), np.ones((3, 3))).astype(bool) & ~np.eye(9, dtype=bool)
    cross_defect = ~np.kron(np.eye(3), np.ones((3, 3))).astype(bool)
    # the shared defect process adds to the shared sample quality
    assert corr[same_defect].mean() > corr[cross_defect].mean() + 0.1


@pytest.mark.parametrize("defect", DEFECTS)
def test_severity_is_visible_in_pixels(defect: str) -> None:
    by_level = np.array(
        [
            [
                counts_per_third(render_one(defect, 0, level, seed), SIGN[defect])[0]
                for seed in SEEDS
            ]
            for level in range(N_LEVELS)
        ]
    )  # [level, seed]: defect pixels in the left third
    assert bool((by_level[0] == 0).all())  # a clean sample has none
    assert bool((by_level[5] > by_level[1]).all())  # for every seed
    assert bool(np.all(np.diff(by_level.mean(axis=1)) > 0))  # and on average, level by level


@pytest.mark.parametrize("region", range(len(REGIONS)), ids=REGIONS)
@pytest.mark.parametrize("defect", DEFECTS)
def test_defect_stays_in_its_region(defect: str, region: int) -> None:
    for seed in SEEDS:
        clean = counts_per_third(render_one(defect, region, 0, seed), SIGN[defect])
        defective = counts_per_third(render_one(defect, region, 5, seed), SIGN[defect])
        for third in range(3):
            if third == region:
                assert defective[third] > clean[third] + 50
            else:
                assert defective[third] <= clean[third] + 2, (seed, REGIONS[third])
