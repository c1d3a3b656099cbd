"""Does label-safe augmentation starve training? Images/s with and without it.

    python benchmarks/augmentation_throughput.py
    python benchmarks/augmentation_throughput.py --epochs 3 --workers 0 1 2

On the training split of the default data (``params.yaml``: the embedded defect images, 60% of
``data.synthetic.n_samples``), with the policy ``params.yaml`` resolves to, it measures

* loader only: images/s the DataLoader delivers (no model), augmentation off and on, for each
  number of worker processes;
* training: images/s of full training epochs (default model and weighting), off and on.

Augmentation starves training when the loader's images/s (on) falls below training images/s.
Writes the rows to ``benchmarks/out/augmentation_throughput.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loader_rate(dataset, batch_size: int, workers: int, epochs: int) -> float:
    from mtl_models.train.loaders import make_loader

    loader = make_loader(dataset, batch_size, shuffle=True, seed=0, num_workers=workers)
    next(iter(loader))  # start workers outside the timing
    start = time.perf_counter()
    seen = sum(len(images) for _ in range(epochs) for images, _ in loader)
    return seen / (time.perf_counter() - start)


def training_rate(params, dataset, workers: int, epochs: int) -> float:
    import torch

    from mtl_models.inputs import ImageInput
    from mtl_models.nn.model import build_model
    from mtl_models.train.loaders import make_loader
    from mtl_models.train.trainer import Trainer, resolve_device
    from mtl_models.weighting import build_weighting
    from pipelines.services.fitting import model_spec

    torch.manual_seed(0)
    tasks = params.task_specs()
    size = dataset.images.shape[1]
    model = build_model(model_spec(params, tasks, [ImageInput("image", size, 1)]))
    weighting = build_weighting(
        params.train.weighting.method, [t.name for t in tasks], **params.train.weighting_kwargs()
    )
    trainer = Trainer(model, weighting, epochs=1, device=resolve_device(params.train.device))
    loader = make_loader(
        dataset, params.train.batch_size, shuffle=True, seed=0, num_workers=workers
    )
    trainer.train_epoch(loader)  # warm-up epoch (allocator, workers)
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch(loader)
    return epochs * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per row")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    import torch

    from mtl_models.train.loaders import MultiTaskImageDataset
    from pipelines import runtime
    from pipelines.config import load_params
    from pipelines.data.sources.synthetic_defects import generate_defect_dataset
    from pipelines.services.augmentation import resolve_augmentation

    runtime.quiet_environment()
    runtime.keep_freed_memory()
    params = load_params(args.params)
    cfg = params.data.synthetic
    n_train = round(cfg.n_samples * params.split.train)
    images, ratings = generate_defect_dataset(n_train, cfg.image_size, seed=cfg.seed)
    images = images[..., None]
    policy = resolve_augmentation(params, image_size=cfg.image_size)
    print(policy.describe())
    datasets = {
        "off": lambda: MultiTaskImageDataset(images, ratings),
        "on": lambda: MultiTaskImageDataset(images, ratings, transform=policy.build(seed=0)),
    }

    rows = []
    for workers in args.workers:
        for aug, make in datasets.items():
            rate = loader_rate(make(), params.train.batch_size, workers, args.epochs)
            rows.append(
                {"measure": "loader only", "augment": aug, "workers": workers, "images_per_s": rate}
            )
            print(f"loader   augment {aug:<3} workers {workers}: {rate:9.0f} images/s", flush=True)
    for workers in sorted({0, *args.workers} & {0, 1}):
        for aug, make in datasets.items():
            if aug == "off" and workers:
                continue  # without a per-sample transform the loader slices tensors: no workers
            rate = training_rate(params, make(), workers, args.epochs)
            rows.append(
                {"measure": "training", "augment": aug, "workers": workers, "images_per_s": rate}
            )
            print(f"training augment {aug:<3} workers {workers}: {rate:9.0f} images/s", flush=True)

    meta = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.system()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "n_images": n_train,
        "image_size": cfg.image_size,
        "kept": [d.name for d in policy.kept],
    }
    out = REPO / "benchmarks" / "out" / "augmentation_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\n{meta}\n")
    print("| measure | augmentation | workers | images/s |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['measure']} | {r['augment']} | {r['workers']} | {r['images_per_s']:.0f} |")


if __name__ == "__main__":
    main()
