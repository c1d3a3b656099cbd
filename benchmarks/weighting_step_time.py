"""Time per training step and peak memory of every weighting method, relative to `equal`.

    python benchmarks/weighting_step_time.py                   # all methods, default model
    python benchmarks/weighting_step_time.py --methods equal upgrad --steps 30
    python benchmarks/weighting_step_time.py --levels parameters features   # both paths
    python benchmarks/weighting_step_time.py --methods equal \
        --set model.backbone.name=torchvision/resnet18 --set model.shared_depth=null

Uses the model and batch size of ``params.yaml`` on a batch of the embedded defect images.
Each method runs in its own process, so its peak memory (RSS on CPU, allocator peak on CUDA)
is its own; the ratios compare methods measured in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(
    method: str,
    params_file: Path,
    steps: int,
    warmup: int,
    device_name: str,
    overrides: list[str],
) -> dict:
    """One method in this process: median step time (ms) and peak memory (MiB)."""
    import torch

    from mtl_models.inputs import ImageInput
    from mtl_models.nn.model import build_model
    from mtl_models.train.loaders import images_to_tensor
    from mtl_models.train.trainer import Trainer, resolve_device
    from mtl_models.weighting import build_weighting
    from pipelines import runtime
    from pipelines.config import load_params
    from pipelines.data.sources.synthetic_defects import generate_defect_dataset
    from pipelines.services.fitting import model_spec

    runtime.keep_freed_memory()
    name, _, level = method.partition("/")  # "upgrad/features": the feature-level path
    chosen = [f"train.weighting.method={name}", *([f"train.weighting.level={level}"] * bool(level))]
    params = load_params(params_file, [*overrides, *chosen])
    cfg = params.data.synthetic
    torch.manual_seed(0)
    device = resolve_device(device_name)
    images, ratings = generate_defect_dataset(params.train.batch_size, cfg.image_size, seed=0)
    batch = [(images_to_tensor(images[:, :, :, None]), torch.from_numpy(ratings).float())]
    tasks = params.task_specs()
    model = build_model(model_spec(params, tasks, [ImageInput("image", cfg.image_size, 1)]))
    weighting = build_weighting(name, [t.name for t in tasks], **params.train.weighting_kwargs())
    trainer = Trainer(model, weighting, epochs=1, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        trainer.train_epoch(batch)  # one batch: exactly one optimiser step
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "method": method,
        "family": "gradient" if weighting.needs_task_gradients else "loss",
        "ms_per_step": statistics.median(times),
        "peak_mib": peak,
        "device": str(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", help="default: every registered method")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--levels",
        nargs="+",
        default=["parameters"],
        choices=["parameters", "features"],
        help="aggregators' paths to time: exact (parameters) and/or feature-level",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override params (e.g. the backbone), as `mtlflow --set` does",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = measure(
            args.child, args.params, args.steps, args.warmup, args.device, args.overrides
        )
        print("RESULT " + json.dumps(result))
        return

    from mtl_models.weighting import WEIGHTINGS

    names = args.methods or ["equal", *[m for m in WEIGHTINGS.names() if m != "equal"]]
    methods = []
    for name in names:
        levels = "level" in WEIGHTINGS.get(name).__init__.__code__.co_varnames
        for level in args.levels if levels else ["parameters"]:
            spec = name if level == "parameters" else f"{name}/{level}"
            if spec not in methods:
                methods.append(spec)
    rows = []
    for method in methods:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            method,
            "--params",
            str(args.params),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--device",
            args.device,
            *(f"--set={item}" for item in args.overrides),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{method}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[len("RESULT ") :]))
        print(
            f"{method:20s} {rows[-1]['ms_per_step']:8.1f} ms/step  {rows[-1]['peak_mib']:7.0f} MiB",
            flush=True,
        )

    base = next(r for r in rows if r["method"] == "equal")
    command = ["python benchmarks/weighting_step_time.py", f"--steps {args.steps}"]
    command.append(f"--levels {' '.join(args.levels)}")
    if args.device != "auto":
        command.append(f"--device {args.device}")
    if args.methods:
        command.append(f"--methods {' '.join(args.methods)}")
    command += [f"--set {item}" for item in args.overrides]
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {platform.system()}, "
        f"device {base['device']}, {date.today()}; `{' '.join(command)}`\n"
    )
    print("| method | family | ms/step | x equal | peak memory (MiB) | + vs equal |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['family']} | {r['ms_per_step']:.0f} | "
            f"{r['ms_per_step'] / base['ms_per_step']:.2f} | {r['peak_mib']:.0f} | "
            f"{r['peak_mib'] - base['peak_mib']:+.0f} |"
        )


if __name__ == "__main__":
    main()
