"""A deterministic generator of grey "metal sample" images with rated defects.

Three defect types (scratches, pits, corrosion) in three vertical regions (left, center,
right) give nine ordinal tasks ``<defect>_<region>`` rated 0-5. Ratings are skewed like expert
ratings (mostly 0-1, rarely 5) and correlated through a latent sample quality (all tasks) and
a per-defect process factor (same defect across regions), so the tasks are related. Severity
is drawn into the pixels: scratches grow in count and length, pits in count and size,
corrosion in area and contrast, each kept inside its region.

Sample ``i`` depends only on ``(seed, i)``, so a larger dataset extends a smaller one.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from pipelines.data.sources import SOURCES, Source

if TYPE_CHECKING:
    from pipelines.config import DataConfig, Params

DEFECTS = ("scratches", "pits", "corrosion")
REGIONS = ("left", "center", "right")
N_LEVELS = 6
# Share of each rating 0..5 per task: skewed towards clean samples, like expert ratings.
LEVEL_SHARES = (0.40, 0.25, 0.15, 0.10, 0.065, 0.035)
# Variance split of the latent severity: sample quality + defect process + task noise = 1.
QUALITY_VAR, PROCESS_VAR = 0.36, 0.25

_THRESHOLDS = np.array([NormalDist().inv_cdf(c) for c in np.cumsum(LEVEL_SHARES)[:-1]])


def defect_task_names() -> list[str]:
    """The nine task names, defect-major: ``scratches_left, scratches_center, ...``."""
    return [f"{d}_{r}" for d in DEFECTS for r in REGIONS]


def sample_ratings(rng: np.random.Generator) -> np.ndarray:
    """Nine correlated ratings 0..5 for one sample, in ``defect_task_names()`` order."""
    quality = rng.standard_normal()
    process = rng.standard_normal(len(DEFECTS))
    noise = rng.standard_normal(len(DEFECTS) * len(REGIONS))
    latent = (
        math.sqrt(QUALITY_VAR) * quality
        + math.sqrt(PROCESS_VAR) * np.repeat(process, len(REGIONS))
        + math.sqrt(1.0 - QUALITY_VAR - PROCESS_VAR) * noise
    )
    return (latent[:, None] > _THRESHOLDS[None, :]).sum(axis=1)


def _region_box(region: int, size: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a region with a margin, so a defect never crosses into another."""
    width = size / len(REGIONS)
    margin = max(1.5, size / 32)
    return region * width + margin, margin, (region + 1) * width - margin, size - margin


def _draw_scratches(draw: ImageDraw.ImageDraw, box, level: int, size: int, rng) -> None:
    x0, y0, x1, y1 = box
    length = size * (0.12 + 0.06 * level)
    for _ in range(level):
        angle = rng.uniform(math.radians(55), math.radians(125))  # mostly vertical: fits a region
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        dx, dy = 0.5 * length * math.cos(angle), 0.5 * length * math.sin(angle)
        ends = [(cx - dx, cy - dy), (cx + dx, cy + dy)]
        ends = [(min(max(x, x0), x1), min(max(y, y0), y1)) for x, y in ends]
        draw.line(ends, fill=255, width=max(1, size // 64))


def _draw_pits(draw: ImageDraw.ImageDraw, box, level: int, size: int, rng) -> None:
    x0, y0, x1, y1 = box
    radius = size / 64 * (0.9 + 0.2 * level)
    for _ in range(2 * level):
        cx = rng.uniform(x0 + radius, x1 - radius)
        cy = rng.uniform(y0 + radius, y1 - radius)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)


def _draw_corrosion(draw: ImageDraw.ImageDraw, box, level: int, size: int, rng) -> None:
    x0, y0, x1, y1 = box
    radius = size / 64 * (2.6 + 1.0 * level)
    cx = rng.uniform(x0 + radius * 0.6, x1 - radius * 0.6)
    cy = rng.uniform(y0 + radius, y1 - radius)
    for _ in range(3 + level):  # an irregular blotch: a cluster of overlapping ellipses
        ox, oy = rng.normal(0, radius * 0.35, 2)
        rx, ry = radius * rng.uniform(0.5, 0.9), radius * rng.uniform(0.5, 0.9)
        ex, ey = min(max(cx + ox, x0 + rx), x1 - rx), min(max(cy + oy, y0 + ry), y1 - ry)
        draw.ellipse([ex - rx, ey - ry, ex + rx, ey + ry], fill=255)


_DRAWERS = {"scratches": _draw_scratches, "pits": _draw_pits, "corrosion": _draw_corrosion}


def render_sample(
    ratings: np.ndarray, size: int, rng: np.random.Generator, masks_out: list | None = None
) -> np.ndarray:
    """A ``size x size`` uint8 grey image showing the given nine ratings.

    With ``masks_out`` (a list), appends one boolean ``[size, size]`` mask per task (in
    ``defect_task_names()`` order) of the pixels its defects were drawn on: the ground truth of
    where each label lives, used to check that an augmentation keeps labels true.
    """
    ys = np.linspace(0.0, 1.0, size)[:, None]
    xs = np.linspace(0.0, 1.0, size)[None, :]
    base = rng.uniform(115, 150)
    gradient = rng.uniform(-12, 12) * (xs - 0.5) + rng.uniform(-12, 12) * (ys - 0.5)
    brushed = rng.normal(0, 5, (size, 1))  # rolling marks run horizontally
    image = base + gradient + brushed + rng.normal(0, 3, (size, size))

    masks = {}
    for d, defect in enumerate(DEFECTS):
        canvas = Image.new("L", (size, size), 0)
        for r in range(len(REGIONS)):
            level = int(ratings[d * len(REGIONS) + r])
            region = Image.new("L", (size, size), 0)
            if level:
                _DRAWERS[defect](ImageDraw.Draw(region), _region_box(r, size), level, size, rng)
                canvas = ImageChops.lighter(canvas, region)  # binary shapes: the union
            if masks_out is not None:
                masks_out.append(np.asarray(region) > 0)
        if defect == "corrosion":
            canvas = canvas.filter(ImageFilter.GaussianBlur(radius=size / 64))
        masks[defect] = np.asarray(canvas, dtype=float) / 255.0

    # Corrosion darkens more at higher severity of the region it sits in.
    corrosion_depth = np.zeros((size, size))
    width = size / len(REGIONS)
    for r in range(len(REGIONS)):
        cols = slice(round(r * width), round((r + 1) * width))
        corrosion_depth[:, cols] = 38 + 9 * int(ratings[2 * len(REGIONS) + r])
    mottle = 0.75 + 0.5 * rng.random((size, size))
    image -= masks["corrosion"] * corrosion_depth * mottle
    image -= masks["pits"] * 85
    image = image * (1 - masks["scratches"]) + masks["scratches"] * 225
    image += rng.normal(0, 4, (size, size))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate_defect_dataset(
    n_samples: int, image_size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` images ``[N, S, S]`` uint8 and ratings ``[N, 9]`` int (task-name order)."""
    if n_samples < 1 or image_size < 24:
        raise ValueError("need n_samples >= 1 and image_size >= 24")
    images = np.empty((n_samples, image_size, image_size), dtype=np.uint8)
    ratings = np.empty((n_samples, len(DEFECTS) * len(REGIONS)), dtype=np.int64)
    for i in range(n_samples):
        rng = np.random.default_rng([seed, i])
        ratings[i] = sample_ratings(rng)
        images[i] = render_sample(ratings[i], image_size, rng)
    return images, ratings


@SOURCES.register("synthetic_defects")
class SyntheticDefects(Source):
    """The embedded metal-sample images (PNG) and their ratings (``manifest.csv``)."""

    def image_size(self, data: DataConfig) -> int | None:
        return data.synthetic.image_size

    def write(self, params: Params, out: Path) -> int:
        import pandas as pd

        cfg = params.data.synthetic
        print(
            f"prepare: generating {cfg.n_samples} defect images "
            f"({cfg.image_size}px, seed {cfg.seed})"
        )
        images, ratings = generate_defect_dataset(cfg.n_samples, cfg.image_size, cfg.seed)
        (out / "images").mkdir()
        rel_paths = []
        for i, image in enumerate(images):
            rel = f"images/{i:05d}.png"
            Image.fromarray(image).save(out / rel)
            rel_paths.append(rel)
        manifest = pd.DataFrame(ratings, columns=defect_task_names())
        manifest.insert(0, "path", rel_paths)
        manifest.to_csv(out / "manifest.csv", index=False)
        return len(images)
