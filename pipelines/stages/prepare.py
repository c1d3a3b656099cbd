"""``prepare``: write the embedded defect dataset as PNG files plus a label manifest."""

from __future__ import annotations

import pandas as pd
from PIL import Image

from mtl_models.synthetic import defect_task_names, generate_defect_dataset
from pipelines.config import Params
from pipelines.files import ProjectPaths, atomic_dir


def prepare(params: Params, paths: ProjectPaths) -> int:
    """Generate ``data/raw/images/*.png`` and ``data/raw/manifest.csv``; returns the count."""
    cfg = params.data.synthetic
    print(
        f"prepare: generating {cfg.n_samples} defect images ({cfg.image_size}px, seed {cfg.seed})"
    )
    images, ratings = generate_defect_dataset(cfg.n_samples, cfg.image_size, cfg.seed)
    with atomic_dir(paths.raw_dir) as scratch:
        (scratch / "images").mkdir()
        rel_paths = []
        for i, image in enumerate(images):
            rel = f"images/{i:05d}.png"
            Image.fromarray(image).save(scratch / rel)
            rel_paths.append(rel)
        manifest = pd.DataFrame(ratings, columns=defect_task_names())
        manifest.insert(0, "path", rel_paths)
        manifest.to_csv(scratch / paths.manifest.name, index=False)
    print(f"prepare: wrote {len(images)} images and {paths.manifest.relative_to(paths.root)}")
    return len(images)
