"""The empirical label audit as the pipeline runs it (``augment.audit``).

A probe, the configured model trained for ``augment.audit.epochs`` without augmentation and
on the plain summed loss, predicts the validation split with and without each kept transform
(:mod:`mtl_models.augment.audit`). ``mtlflow augment`` and ``train`` run it when
``augment.audit.enabled``; its verdicts go to ``reports/augmentation.json``, the MLflow run
and the diagnosis of ``evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch.distributed as dist

from mtl_models.augment.audit import AuditSettings, LabelAudit, Predict, audit_policy
from mtl_models.augment.policy import ResolvedPolicy
from mtl_models.inputs import InputSpec
from mtl_models.metrics import majority_labels
from mtl_models.train.loaders import MultiTaskDataset, make_loader
from mtl_models.train.prediction import predict
from pipelines.config import Params, overlay
from pipelines.data.splits import ArraysByInput, load_input_specs, load_split
from pipelines.files import ProjectPaths
from pipelines.services.augmentation import augmented_input, resolve_augmentation
from pipelines.services.fitting import Fitted, fit

Split = tuple[ArraysByInput, np.ndarray]


def audit_note(params: Params, policy: ResolvedPolicy) -> str | None:
    """Why no audit runs (None: it does)."""
    if not params.augment.audit.enabled:
        return "off (`--set augment.audit.enabled=true` measures each kept transform)"
    if augmented_input(params) is None or not policy.enabled:
        return "off (augmentation is off)"
    if not policy.kept:
        return "nothing to audit: no transform is kept"
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # the other processes would wait in their first collective while rank 0 trains it
        return "off under DDP: run `mtlflow augment --set augment.audit.enabled=true`"
    return None


def probe_params(params: Params) -> Params:
    """The configured model, trained briefly on summed losses, without augmentation, early
    stopping or affinity: what reads each label from an unaugmented image."""
    return overlay(
        params,
        {
            "augment.enabled": False,
            "train.epochs": params.augment.audit.epochs,
            "train.patience": None,
            "train.affinity.enabled": False,
            "train.weighting.method": "equal",
            "train.seed": params.augment.audit.seed,
        },
        source="augment.audit",
    )


def train_probe(
    params: Params, train_data: Split, val_data: Split, input_specs: Sequence[InputSpec] = ()
) -> Fitted:
    """The probe, trained on the training split."""
    probe = probe_params(params)
    off = resolve_augmentation(probe)  # augment.enabled is false: nothing is kept
    return fit(probe, train_data, val_data, off, input_specs=input_specs)


def predictor(fitted: Fitted, inputs: ArraysByInput, image: str) -> Predict:
    """Images -> the probe's predictions, the split's other inputs alongside."""

    def run(images: np.ndarray) -> np.ndarray:
        arrays = {**inputs, image: images}
        unused = np.zeros((len(images), len(fitted.tasks)), np.float32)
        loader = make_loader(MultiTaskDataset(arrays, unused), 256, shuffle=False)
        return predict(fitted.model, loader, fitted.device).predictions

    return run


def audit_with_probe(
    params: Params,
    fitted: Fitted,
    policy: ResolvedPolicy,
    train_labels: np.ndarray,
    val_data: Split,
) -> LabelAudit:
    """Every kept transform of ``policy`` audited on the validation split with ``fitted``."""
    cfg = params.augment.audit
    image = augmented_input(params)
    if image is None:
        raise ValueError("the label audit needs an image input")
    inputs, labels = val_data
    return audit_policy(
        policy,
        predictor(fitted, inputs, image),
        np.asarray(inputs[image]),
        np.asarray(labels),
        fitted.tasks,
        majority=majority_labels(train_labels, fitted.tasks),
        settings=AuditSettings(max_drop=cfg.max_drop, repeats=cfg.repeats, seed=cfg.seed),
        probe=f"probe: the configured model, {cfg.epochs} epochs without augmentation",
    )


def audit_augmentation(
    params: Params,
    policy: ResolvedPolicy,
    train_data: Split,
    val_data: Split,
    input_specs: Sequence[InputSpec] = (),
) -> LabelAudit:
    """Train the probe and audit every kept transform on the validation split, timed."""
    started = time.perf_counter()
    fitted = train_probe(params, train_data, val_data, input_specs)
    trained = time.perf_counter()
    audit = audit_with_probe(params, fitted, policy, train_data[1], val_data)
    seconds = {"probe": trained - started, "audit": time.perf_counter() - trained}
    return replace(audit, seconds={k: round(v, 1) for k, v in seconds.items()})


def run_audit(
    params: Params, policy: ResolvedPolicy, paths: ProjectPaths, train_data: Split
) -> tuple[LabelAudit | None, str | None]:
    """The audit of the project's splits, with its verdicts printed, or why none ran."""
    note = audit_note(params, policy)
    if note is not None:
        print(f"label audit: {note}")
        return None, note
    val_data = load_split(paths, "val", params.task_specs())
    audit = audit_augmentation(params, policy, train_data, val_data, load_input_specs(paths))
    print(audit.describe())
    print(
        f"label audit: probe {audit.seconds['probe']:.0f} s, audit {audit.seconds['audit']:.0f} s"
    )
    return audit, None
