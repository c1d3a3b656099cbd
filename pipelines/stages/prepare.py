"""``prepare``: generate the chosen built-in dataset into ``data/raw/``, as files in the same
formats a user brings (a manifest or table, image files, ``.npy`` signals)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from PIL import Image

from pipelines.config import Params
from pipelines.data import examples as example_data
from pipelines.data.sources.synthetic_defects import defect_task_names, generate_defect_dataset
from pipelines.files import ProjectPaths, atomic_dir


def write_defects(params: Params, out: Path) -> int:
    """The embedded metal-sample images (PNG) and their ratings (``manifest.csv``)."""
    cfg = params.data.synthetic
    print(
        f"prepare: generating {cfg.n_samples} defect images ({cfg.image_size}px, seed {cfg.seed})"
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


def _your_files(params: Params, out: Path) -> int:
    """Nothing to generate; a note says where the data is, so ``data/raw`` exists for DVC."""
    where = f"{params.data.dir}/{params.data.table}"
    (out / "SOURCE.txt").write_text(f"data.source is files: split reads {where}\n")
    print(f"prepare: data.source is files, nothing to generate; split reads {where}")
    return 0


WRITERS: dict[str, Callable[[Params, Path], int]] = {
    "synthetic_defects": write_defects,
    "penguins": lambda params, out: example_data.write_penguins(out),
    "multimnist": lambda params, out: example_data.write_multimnist(
        out, n_images=min(params.data.synthetic.n_samples, 2500), seed=params.data.synthetic.seed
    ),
    "synthetic_signals": lambda params, out: example_data.write_signals(
        out,
        n_specimens=max(params.data.synthetic.n_samples // 3, 1),
        seed=params.data.synthetic.seed,
    ),
    "files": _your_files,
}


def prepare(params: Params, paths: ProjectPaths) -> int:
    """Write ``data.source``'s files into ``data/raw/`` (replaced only if it succeeds); returns
    the number of samples written."""
    with atomic_dir(paths.raw_dir) as scratch:
        count = WRITERS[params.data.source](params, scratch)
    if count:
        print(f"prepare: wrote {count} samples ({params.data.source}) to data/raw/")
    return count
