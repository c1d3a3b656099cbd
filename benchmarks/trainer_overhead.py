"""Training throughput of mtlflow's Trainer against a minimal hand-written PyTorch loop.

Same model (params.yaml with reports/best_params.yaml applied, as `mtlflow train` builds it),
same train split, batch size, optimiser, seed and device, no augmentation on either side.
In one process, alternating the two so machine noise hits both alike:

- bare loop: forward, the sum of the task losses, backward, AdamW step. Nothing else.
- Trainer, training epochs alone (`Trainer.train_epoch`, `equal` weighting, statistics kept
  on the device).
- the bare loop plus a forward pass over the validation split each epoch, which fit does;
- Trainer.fit with MLflow logging on (a run in a temporary SQLite store, MlflowEpochLogger),
  which also scores the validation split every epoch: its samples/s counts train samples
  over the whole wall time.

- model only: the same number of steps on one random batch already on the device (no
  loader, no copies): the floor the data pipeline and the framework should approach.

`--bf16`, `--channels-last` and `--compile` apply to every loop alike (autocast, NHWC layout,
`torch.compile` of the forward pass; the Trainer gets them through `Acceleration`). Under
`--compile` each loop runs once untimed first, and those seconds (the compile cost) are shown
as "first run s". `--batch-size` overrides the tuned batch size (a GPU wants larger ones).

Run from a project with its splits (`dvc repro` or `mtlflow prepare && mtlflow split`):

    python benchmarks/trainer_overhead.py                 # 3 epochs, 2 repeats
    python benchmarks/trainer_overhead.py --epochs 5 --repeats 3 --device cuda --bf16 \
        --channels-last --compile
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import mlflow
import torch

from mtl_models.metrics import majority_labels
from mtl_models.nn.model import build_model
from mtl_models.train.acceleration import Acceleration
from mtl_models.train.loaders import MultiTaskImageDataset, make_loader
from mtl_models.train.trainer import Trainer, resolve_device
from mtl_models.weighting import build_weighting
from pipelines import runtime
from pipelines.config import load_params
from pipelines.data.splits import load_input_specs, load_split
from pipelines.files import ProjectPaths
from pipelines.services.best_params import apply_best_params
from pipelines.services.fitting import fit_task_specs, model_spec, seed_everything
from pipelines.tracking import MlflowEpochLogger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="NHWC images and model")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward pass")
    parser.add_argument("--batch-size", type=int, help="default: the tuned train.batch_size")
    args = parser.parse_args()
    accel = Acceleration(bf16=args.bf16, channels_last=args.channels_last, compile=args.compile)
    runtime.keep_freed_memory()
    paths = ProjectPaths(Path.cwd())
    params, _ = apply_best_params(load_params(paths.root / "params.yaml"), paths)
    cfg = params.train
    batch_size = args.batch_size or cfg.batch_size
    tasks = params.task_specs()
    images, labels = load_split(paths, "train", tasks)
    val_images, val_labels = load_split(paths, "val", tasks)
    images, val_images = images["image"], val_images["image"]
    fitted_tasks = fit_task_specs(tasks, labels)
    spec = model_spec(params, fitted_tasks, load_input_specs(paths))
    device = resolve_device(args.device)

    def loader():  # a fresh, identically seeded loader for every measurement
        return make_loader(
            MultiTaskImageDataset(images, labels), batch_size, shuffle=True, seed=cfg.seed
        )

    val_loader = make_loader(MultiTaskImageDataset(val_images, val_labels), 256, shuffle=False)

    def bare_model() -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
        seed_everything(cfg.seed)
        model = build_model(spec).to(device)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        forward = torch.compile(model) if args.compile else model
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        return model, forward, opt

    def bare_step(model, forward, opt, x, y) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = torch.stack(model.task_loss_terms(forward(x), y)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def layout(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if args.channels_last else x

    def bare(validate: bool = False) -> float:
        model, forward, opt = bare_model()
        batches = loader()
        start = time.perf_counter()
        for _ in range(args.epochs):
            model.train()
            for x, y in batches:
                x, y = layout(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
                bare_step(model, forward, opt, x, y)
            if validate:  # what fit adds per epoch: a forward pass over the validation split
                model.eval()
                with torch.no_grad():
                    for x, _ in val_loader:
                        model(x.to(device, non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def model_only() -> float:
        model, forward, opt = bare_model()
        model.train()
        x, y = next(iter(loader()))
        x, y = layout(x.to(device)), y.to(device)
        steps = len(loader()) * args.epochs
        start = time.perf_counter()
        for _ in range(steps):
            bare_step(model, forward, opt, x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def trainer(callbacks=()) -> Trainer:
        seed_everything(cfg.seed)
        return Trainer(
            build_model(spec),
            build_weighting("equal", [t.name for t in tasks]),
            epochs=args.epochs,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            device=device,
            majority=majority_labels(labels, tasks),
            callbacks=callbacks,
            acceleration=accel,
        )

    def trainer_epochs() -> float:
        t, batches = trainer(), loader()
        start = time.perf_counter()
        for _ in range(args.epochs):
            t.train_epoch(batches)
        return time.perf_counter() - start

    def trainer_fit_logged() -> float:
        with tempfile.TemporaryDirectory() as store:
            mlflow.set_tracking_uri(f"sqlite:///{Path(store) / 'mlflow.db'}")
            experiment = mlflow.set_experiment("trainer-overhead")
            with mlflow.start_run(experiment_id=experiment.experiment_id):
                t, batches = trainer([MlflowEpochLogger()]), loader()
                start = time.perf_counter()
                t.fit(batches, val_loader)
                return time.perf_counter() - start

    runs = {
        "model only (one batch on the device)": model_only,
        "bare loop": bare,
        "Trainer epochs": trainer_epochs,
        "bare loop + validation pass": lambda: bare(validate=True),
        "Trainer.fit + MLflow": trainer_fit_logged,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    # Warm-up, untimed: allocator, kernels, first touch of the arrays. Under --compile every
    # loop runs once first, so its compilation (a new model of a compiled class reuses the
    # graph) stays out of the timings; its seconds are printed as the compile cost.
    first: dict[str, float] = {}
    if args.compile:
        first = {name: run() for name, run in runs.items()}
    else:
        bare()
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())
    n = len(images) * args.epochs
    base = statistics.median(times["bare loop"])
    print(
        f"\n{len(images)} train samples x {args.epochs} epochs, batch {batch_size}, "
        f"device {device}, torch threads {torch.get_num_threads()}, median of {args.repeats}, "
        f"bf16 {args.bf16}, channels-last {args.channels_last}, compile {args.compile}"
    )
    floor = statistics.median(times["model only (one batch on the device)"])
    print(
        "| loop | samples/s | ratio to bare loop | ratio to model only | first run s |\n"
        "|---|---:|---:|---:|---:|"
    )
    for name, values in times.items():
        seconds = statistics.median(values)
        warm = f"{first[name]:.1f}" if name in first else ""
        print(
            f"| {name} | {n / seconds:.0f} | {base / seconds:.3f} "
            f"| {floor / seconds:.3f} | {warm} |"
        )


if __name__ == "__main__":
    main()
