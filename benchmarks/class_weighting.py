"""Rare classes: plain cross-entropy (classification head, no class weights) against the ordinal
head with ``balanced`` class weights, on the same split, augmentation and seed.

Run from a project directory that has its splits (after `dvc repro` or `mtlflow split`):

    python benchmarks/class_weighting.py            # untuned params.yaml, 30 epochs
    python benchmarks/class_weighting.py --set train.epochs=5

Both variants train with `tune.enabled=false` (params.yaml as it is) and affinity off. The
classification variant keeps the augmentation the ordinal one gets (CoarseDropout is excluded
for ordinal tasks by default, not for classification ones). Prints, per task, test QWK,
balanced accuracy and the recall of the top level, and each variant's largest share of one
predicted class (a collapse shows as a share near 1).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.config import load_params  # noqa: E402
from pipelines.data.splits import load_split  # noqa: E402
from pipelines.files import ProjectPaths  # noqa: E402
from pipelines.serving import Predictor  # noqa: E402

COMMON = ["tune.enabled=false", "train.affinity.enabled=false"]


def variants(task_names: list[str], noise_blur: str) -> dict[str, list[str]]:
    plain = [f"tasks.{t}.kind=classification" for t in task_names]
    return {
        "cross-entropy, no weights": [
            *plain,
            "train.class_weighting=none",
            f"augment.noise_blur={noise_blur}",
        ],
        "ordinal, balanced": ["train.class_weighting=balanced"],
    }


def train(overrides: list[str], project: Path, keep: Path) -> None:
    cmd = ["mtlflow", "train"] + [a for o in [*COMMON, *overrides] for a in ("--set", o)]
    subprocess.run(cmd, cwd=project, check=True)
    shutil.copytree(project / "models", keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--set", dest="extra", action="append", default=[])
    args = parser.parse_args()
    params = load_params(args.project / "params.yaml", [*COMMON, *args.extra])
    tasks = params.task_specs()
    # the ordinal policy's noise/blur entries that survive, for the classification variant
    kept = [e for e in params.augment.noise_blur if e.name not in ("CoarseDropout",)]
    noise_blur = (
        "["
        + ", ".join(
            "{" + ", ".join(f"{k}: {v}" for k, v in {"name": e.name, **e.args()}.items()) + "}"
            for e in kept
        )
        + "]"
    )
    inputs, labels = load_split(ProjectPaths(args.project), "test", tasks)
    images = inputs["image"]
    top = max(t.n_classes or 0 for t in tasks) - 1
    results: dict[str, dict[str, tuple[float, float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, overrides in variants([t.name for t in tasks], noise_blur).items():
            keep = Path(scratch) / name.replace(" ", "_").replace(",", "")
            train([*overrides, *args.extra], args.project, keep)
            pred = Predictor.from_dir(keep).predict_images(images)
            for t, task in enumerate(tasks):
                present = ~np.isnan(labels[:, t])
                y = labels[present, t].astype(int)
                p = pred[task.name].to_numpy()[present].astype(int)
                results.setdefault(name, {})[task.name] = (
                    skm.cohen_kappa_score(
                        y, p, weights="quadratic", labels=list(range(task.n_classes or 0))
                    ),
                    skm.balanced_accuracy_score(y, p),
                    skm.recall_score(y, p, labels=[top], average="macro", zero_division=0),
                    np.bincount(p).max() / len(p),
                )
    names = list(results)
    header = " | ".join(f"{n}: QWK / bal. acc / recall of {top}" for n in names)
    print(f"\n| task | {header} |")
    print("|---|" + "---:|" * len(names))
    for task in results[names[0]]:
        cells = [" / ".join(f"{v:.3f}" for v in results[n][task][:3]) for n in names]
        print(f"| {task} | " + " | ".join(cells) + " |")
    for n in names:
        values = np.array(list(results[n].values()))
        print(
            f"{n}: mean QWK {values[:, 0].mean():.3f}, balanced accuracy {values[:, 1].mean():.3f},"
            f" recall of {top} {values[:, 2].mean():.2f}; largest one-class share of predictions "
            f"{values[:, 3].max():.2f}"
        )


if __name__ == "__main__":
    main()
