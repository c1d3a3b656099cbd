"""Generated flower photos for `data.source: flowers`: two classification tasks on one RGB
image, `type` (rose or daisy) read from the petals' shape and `colour` (red, pink or white)
read from their hue and saturation.

The two labels live in different evidence on purpose, so the example can show both sides of
label-safe augmentation: flips and rotations keep both labels, while a hue shift, a saturation
change or grayscale changes `colour` and is excluded. Each flower also gets a centre disk drawn
from one distribution for both types, so `type` needs the petals, not the centre's colour;
a random lighting gain, tint and gradient keep `colour` from being read off a single pixel.

Written as a user would bring them: `images/NNNNN.png` and a `manifest.csv` with the header
`path,type,colour` and string labels. Sample `i` depends only on `(seed, i)`.
"""

from __future__ import annotations

import colorsys
import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from pipelines.data.sources import SOURCES, Source

if TYPE_CHECKING:
    from pipelines.config import DataConfig, Params

TYPES = ("rose", "daisy")
COLOURS = ("red", "pink", "white")
SUPERSAMPLE = 3  # drawn at 3x the size and shrunk, so petal edges are smooth

# Petal (hue in degrees, saturation, value) ranges per colour: pink is a light, desaturated
# red, white has almost no saturation. The gaps in saturation survive the lighting below.
_PETAL_HSV = {
    "red": ((-12, 8), (0.75, 1.0), (0.55, 0.9)),
    "pink": ((-30, -5), (0.3, 0.52), (0.82, 1.0)),
    "white": ((-40, 60), (0.0, 0.1), (0.85, 1.0)),
}
# Centre disks, shared by both types: yellow, orange, or a dark brown
_CENTRE_HSV = (((45, 58), (0.7, 1.0), (0.75, 1.0)), ((25, 38), (0.8, 1.0), (0.7, 0.95)),
               ((20, 35), (0.5, 0.8), (0.2, 0.4)))  # fmt: skip


def _hsv(rng: np.random.Generator, ranges) -> np.ndarray:
    """An RGB colour in [0, 255] drawn uniformly from (hue°, saturation, value) ranges."""
    hue, sat, val = (rng.uniform(*r) for r in ranges)
    return 255 * np.array(colorsys.hsv_to_rgb((hue % 360) / 360, sat, val))


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(np.rint(colour), 0, 255))  # type: ignore[return-value]


def _ellipse(cx: float, cy: float, a: float, b: float, angle: float) -> list[tuple[float, float]]:
    """A polygon of the ellipse with half-axes (a, b) turned by `angle` (radians)."""
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    cos, sin = math.cos(angle), math.sin(angle)
    return list(zip(cx + x * cos - y * sin, cy + x * sin + y * cos, strict=True))


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Foliage or soil: a green-to-brown base with blotchy low-frequency noise, float RGB."""
    green, brown = np.array([70, 125, 55]), np.array([125, 95, 60])
    base = green + rng.uniform(0, 1) * (brown - green)
    light = rng.normal(0, 24, (6, 6, 1)) + rng.normal(0, 8, (6, 6, 3))  # mostly light and shade
    coarse = light.astype(np.float32)
    blotches = np.stack(
        [np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.BICUBIC))
         for c in range(3)], axis=-1)  # fmt: skip
    return base + blotches + rng.normal(0, 8, (size, size, 3))


def _draw_daisy(draw, cx, cy, radius, turn, petal, rng) -> None:
    """Many thin, long petals radiating from the centre."""
    count = int(rng.integers(12, 19))
    for k in range(count):
        angle = turn + 2 * np.pi * k / count + rng.normal(0, 0.05)
        length = radius * rng.uniform(0.85, 1.0)
        mid = 0.5 * length + 0.12 * radius
        x, y = cx + mid * math.cos(angle), cy + mid * math.sin(angle)
        shade = petal * rng.uniform(0.88, 1.0)
        outline = _rgb(shade * 0.8)
        draw.polygon(_ellipse(x, y, length / 2, radius * 0.09, angle), _rgb(shade), outline)


def _draw_rose(draw, cx, cy, radius, turn, petal, rng) -> None:
    """A few broad, round, overlapping petals in rings that wind inwards like a spiral."""
    for ring, (count, dist, size) in enumerate(((5, 0.58, 0.42), (4, 0.34, 0.34), (3, 0.14, 0.24))):
        for k in range(count):
            angle = turn + 2 * np.pi * k / count + 0.6 * ring + rng.normal(0, 0.08)
            x, y = cx + dist * radius * math.cos(angle), cy + dist * radius * math.sin(angle)
            shade = petal * rng.uniform(0.78, 0.98) * (1 - 0.07 * ring)
            r = size * radius * rng.uniform(0.92, 1.08)
            poly = _ellipse(x, y, r, r * 0.85, angle)
            draw.polygon(poly, _rgb(shade), _rgb(shade * 0.72), width=SUPERSAMPLE)


def render_flower(kind: str, colour: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A `size x size x 3` uint8 image of one flower of `kind` and `colour` on a background,
    at a random place, scale and turn, under random lighting."""
    big = size * SUPERSAMPLE
    image = Image.fromarray(np.clip(_background(big, rng), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    radius = big * rng.uniform(0.24, 0.36)
    cx, cy = (big * rng.uniform(0.38, 0.62) for _ in range(2))
    petal = _hsv(rng, _PETAL_HSV[colour])
    drawer = _draw_rose if kind == "rose" else _draw_daisy
    drawer(draw, cx, cy, radius, rng.uniform(0, 2 * np.pi), petal, rng)
    centre = _hsv(rng, _CENTRE_HSV[int(rng.integers(len(_CENTRE_HSV)))])
    r = radius * rng.uniform(0.1, 0.16)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], _rgb(centre), _rgb(centre * 0.75))

    pixels = np.asarray(image.resize((size, size), Image.LANCZOS), dtype=np.float64)
    xs = np.linspace(-0.5, 0.5, size)
    gradient = rng.uniform(-0.2, 0.2) * xs[None, :] + rng.uniform(-0.2, 0.2) * xs[:, None]
    gain = rng.uniform(0.75, 1.1) * (1 + gradient)[..., None]
    tint = rng.uniform(0.94, 1.06, 3)
    pixels = pixels * gain * tint + rng.normal(0, 4, pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def write_flowers(out: Path, n_images: int = 600, size: int = 64, seed: int = 0) -> int:
    """`n_images` flower PNGs and their manifest (header `path,type,colour`); each label is
    drawn uniformly and independently, so classes are balanced up to chance."""
    if n_images < 1 or size < 32:
        raise ValueError(f"need n_images >= 1 and size >= 32, got {n_images} and {size}")
    (out / "images").mkdir()
    rows = [("path", "type", "colour")]
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        kind, colour = TYPES[rng.integers(len(TYPES))], COLOURS[rng.integers(len(COLOURS))]
        name = f"images/{i:05d}.png"
        Image.fromarray(render_flower(kind, colour, size, rng)).save(out / name)
        rows.append((name, kind, colour))
    with (out / "manifest.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return n_images


@SOURCES.register("flowers")
class Flowers(Source):
    """The flower images (`data.synthetic`: n_samples, image_size, seed)."""

    def image_size(self, data: DataConfig) -> int | None:
        return data.synthetic.image_size

    def write(self, params: Params, out: Path) -> int:
        cfg = params.data.synthetic
        print(f"prepare: drawing {cfg.n_samples} flowers ({cfg.image_size}px, seed {cfg.seed})")
        return write_flowers(out, n_images=cfg.n_samples, size=cfg.image_size, seed=cfg.seed)
