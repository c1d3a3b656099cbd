"""Label-safe augmentation as the pipeline uses it: the policy resolved from params (a bad
entry fails before any training), its report with the label audit's verdicts
(:mod:`pipelines.services.label_audit`) and a preview grid of augmented samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtl_models.augment.audit import LabelAudit
from mtl_models.augment.policy import PolicyError, ResolvedPolicy, TransformRequest, resolve_policy
from mtl_models.tasks import TaskSpec
from pipelines.config import Params
from pipelines.errors import ConfigError
from pipelines.files import ProjectPaths, write_json
from pipelines.services import plots

PREVIEW_AUGMENTATIONS = 5  # columns after the original
PREVIEW_SEED = 1234


def augmented_input(params: Params) -> str | None:
    """The name of the input augmentation applies to: the first image input (None without
    one)."""
    names = params.data.augmentable_inputs()
    return names[0] if names else None


def resolve_augmentation(params: Params, image_size: int | None = None) -> ResolvedPolicy:
    """The resolved policy for ``params``; a bad transform argument or remap is a ConfigError.
    Without an image input it is off."""
    cfg = params.augment
    name = augmented_input(params)
    if image_size is None:
        image_size = params.data.image_size(name) if name else 64
    requests = [
        TransformRequest(entry.name, group, entry.args(), where=f"augment.{group}[{i}]")
        for group, i, entry in cfg.entries()
    ]
    try:
        return resolve_policy(
            requests,
            params.task_sensitivity(),
            cfg.remaps,
            image_size=image_size,
            enabled=cfg.enabled and name is not None,
        )
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


def preview_rows(
    policy: ResolvedPolicy, images: np.ndarray, labels: np.ndarray, n_rows: int
) -> list[list[tuple[np.ndarray, np.ndarray, list[str]]]]:
    """``n_rows`` evenly spaced samples, each with its original and augmented versions."""
    augment = policy.build(seed=PREVIEW_SEED)
    picks = np.linspace(0, len(images) - 1, min(n_rows, len(images))).astype(int)
    rows = []
    for i in picks:
        row = [(images[i], labels[i], [])]
        if augment is not None:
            for _ in range(PREVIEW_AUGMENTATIONS):
                sample = augment.apply(images[i], labels[i])
                row.append((sample.image, sample.labels, sample.fired))
        rows.append(row)
    return rows


def augmentation_report(
    policy: ResolvedPolicy, audit: LabelAudit | None = None, note: str | None = None
) -> dict[str, Any]:
    """``reports/augmentation.json``: the policy, each kept transform with the audit's verdict
    beside the declarations' reason, and the audit's figures (or why it did not run)."""
    report = policy.to_dict()
    audited = audit.by_name() if audit is not None else {}
    for entry in report["kept"]:
        found = audited.get(entry["name"])
        entry["audit"] = (
            {"flagged": found.flagged, "verdict": found.verdict}
            if found is not None
            else {"flagged": [], "verdict": "not audited"}
        )
    report["audit"] = audit.to_dict() if audit is not None else {"note": note or "not run"}
    return report


def write_augmentation_report(
    policy: ResolvedPolicy,
    tasks: list[TaskSpec],
    images: np.ndarray | None,
    labels: np.ndarray,
    paths: ProjectPaths,
    n_rows: int,
    audit: LabelAudit | None = None,
    audit_note: str | None = None,
) -> tuple[Path, Path | None]:
    """Write ``reports/augmentation.json`` and (with images) the preview grid PNG."""
    report = paths.reports_dir / "augmentation.json"
    write_json(report, augmentation_report(policy, audit, audit_note))
    if images is None:
        return report, None
    preview = paths.plots_dir / "augmentation_preview.png"
    rows = preview_rows(policy, images, labels.astype(np.float32), n_rows)
    plots.save(plots.augmentation_preview(rows, tasks), preview)
    return report, preview


def log_augmentation(
    params: Params,
    policy: ResolvedPolicy,
    tasks: list[TaskSpec],
    train_data: tuple[dict[str, np.ndarray], np.ndarray],
    paths: ProjectPaths,
) -> None:
    """Write the policy's report (with the label audit, when ``augment.audit.enabled``: a
    probe is trained first) and preview of the training samples; log both, how many
    transforms were kept and excluded, and the audit's summary (a tag) to the active run."""
    import mlflow

    from pipelines.services.label_audit import run_audit

    inputs, labels = train_data
    audit, note = run_audit(params, policy, paths, train_data)
    report, preview = write_augmentation_report(
        policy,
        tasks,
        inputs.get(augmented_input(params) or ""),
        labels,
        paths,
        params.augment.preview_samples,
        audit,
        note,
    )
    mlflow.log_artifact(str(report))
    if preview is not None:
        mlflow.log_artifact(str(preview), artifact_path="plots")
    # tags, not metrics: the runs table shows them, and an `augment/` chart section would sort
    # before the scores in the chart view
    mlflow.set_tags(
        {
            "mtlflow.augment_kept": len(policy.kept),
            "mtlflow.augment_excluded": len(policy.excluded),
            "mtlflow.augment_audit": audit.summary() if audit is not None else note,
        }
    )
