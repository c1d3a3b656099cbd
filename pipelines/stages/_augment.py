"""``augment``: show which augmentations every task's label survives; with
``augment.audit.enabled``, measure it (a probe trained without augmentation predicts the
validation images with each kept transform applied); write the report
(``reports/augmentation.json``) and a preview of augmented training samples. ``train`` does
the same inside its MLflow run; this stage inspects a policy without training the model."""

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
from pipelines.services.label_audit import run_audit


def augment(params: Params, paths: ProjectPaths) -> ResolvedPolicy:
    """Resolve, print, audit and write the policy with a preview of augmented training
    samples."""
    tasks = params.task_specs()
    inputs, labels = load_split(paths, "train", tasks)
    policy = resolve_augmentation(params)
    print(policy.describe())
    audit, note = run_audit(params, policy, paths, (inputs, labels))
    name = augmented_input(params)
    report, preview = write_augmentation_report(
        policy,
        tasks,
        inputs.get(name or ""),
        labels,
        paths,
        params.augment.preview_samples,
        audit,
        note,
    )
    print(f"augment: wrote {report}" + (f" and {preview}" if preview else " (no image input)"))
    return policy
