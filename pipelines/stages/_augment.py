"""``augment``: show which augmentations every task's label survives; write the report
(``reports/augmentation.json``) and a preview of augmented training samples. ``train`` does
the same inside its MLflow run; this stage inspects a policy without training."""

from __future__ import annotations

from mtl_models.augment.policy import ResolvedPolicy
from pipelines.config import Params
from pipelines.data.splits import load_split
from pipelines.files import ProjectPaths
from pipelines.services.augmentation import (
    augmented_input,
    resolve_augmentation,
    write_augmentation_report,
)


def augment(params: Params, paths: ProjectPaths) -> ResolvedPolicy:
    """Resolve, print and write the policy with a preview of augmented training samples."""
    tasks = params.task_specs()
    inputs, labels = load_split(paths, "train", tasks)
    policy = resolve_augmentation(params)
    print(policy.describe())
    name = augmented_input(params)
    report, preview = write_augmentation_report(
        policy, tasks, inputs.get(name or ""), labels, paths, params.augment.preview_samples
    )
    print(f"augment: wrote {report}" + (f" and {preview}" if preview else " (no image input)"))
    return policy
