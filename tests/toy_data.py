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


SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (200, 30, 30), "green": (30, 170, 40), "blue": (40, 60, 210)}


def shape_colour_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A flowers-like dataset: RGB uint8 images ``[n, size, size, 3]`` of one coloured shape on
    a light grey background, and labels ``[n, 2]``: shape type and colour (class indices)."""
    rng = np.random.default_rng(seed)
    shapes = rng.integers(0, len(SHAPES), n)
    colours = rng.integers(0, len(COLOURS), n)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    images = np.full((n, size, size, 3), 215, dtype=np.uint8)
    for i in range(n):
        cx, cy = rng.uniform(0.35, 0.65, 2) * size
        r = rng.uniform(0.18, 0.28) * size
        if SHAPES[shapes[i]] == "circle":
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        elif SHAPES[shapes[i]] == "square":
            inside = (abs(xx - cx) <= r * 0.85) & (abs(yy - cy) <= r * 0.85)
        else:  # an upward triangle
            inside = (yy <= cy + r * 0.8) & (abs(xx - cx) <= (yy - (cy - r)) * 0.6)
        images[i][inside] = list(COLOURS.values())[colours[i]]
    return images, np.stack([shapes, colours], axis=1).astype(np.float32)


def dominant_colour(image: np.ndarray) -> int:
    """The colour class nearest the shape's pixels: the saturated ones (the background is grey
    and a rotation's fill black), compared by chromaticity so brightness does not count."""
    pixels = image.reshape(-1, 3).astype(float)
    shape = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 60]
    mean = shape.mean(axis=0)
    refs = np.array(list(COLOURS.values()), dtype=float)
    chroma = mean / max(mean.sum(), 1.0)
    ref_chroma = refs / refs.sum(axis=1, keepdims=True)
    return int(np.argmin(((ref_chroma - chroma) ** 2).sum(axis=1)))
