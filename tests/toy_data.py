"""A tiny two-task image problem for fast training tests."""

from __future__ import annotations

import numpy as np


def bright_left_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 uint8 images and labels ``[n, 2]``: task 0 "is the mean brightness high?",
    task 1 "is the left half brighter than the right?"."""
    rng = np.random.default_rng(seed)
    bright = rng.integers(0, 2, n)
    left = rng.integers(0, 2, n)
    base = np.where(bright, 170.0, 85.0)[:, None, None]
    side = np.where(left, 25.0, -25.0)[:, None, None]
    halves = np.concatenate([np.ones((1, 8, 4)), -np.ones((1, 8, 4))], axis=2)
    images = base + side * halves + rng.normal(0, 12, (n, 8, 8))
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)[..., None]
    return images, np.stack([bright, left], axis=1).astype(np.float32)
