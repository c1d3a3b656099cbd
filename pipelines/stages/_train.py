"""``train``: fit the multi-task model, log the run and a servable pyfunc to MLflow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

import mlflow

from mtl_models.nn.checkpoint import save_checkpoint
from mtl_models.train.loaders import Shard
from mtl_models.train.resume import Checkpoint
from pipelines import tracking
from pipelines.config import Params, overlay
from pipelines.data.splits import load_input_specs, load_split, split_digest
from pipelines.files import ProjectPaths, atomic_dir, write_json
from pipelines.services import gates, plot_data, plots
from pipelines.services.affinity import write_affinity_report
from pipelines.services.augmentation import log_augmentation, resolve_augmentation
from pipelines.services.best_params import apply_best_params
from pipelines.services.distributed import device_for, process_group
from pipelines.services.fitting import acceleration_for, check_backbone, fit
from pipelines.serving import example_request, log_pyfunc_model


def train(
    params: Params,
    paths: ProjectPaths,
    overridden: Collection[str] = (),
    project_run: str | None = None,
) -> dict[str, object]:
    """Train, write ``models/`` and log everything to one MLflow run (``project_run``, a flow
    run's, when given); returns ``run.json``. Tuned values (``reports/best_params.yaml``)
    apply, except on the ``overridden`` keys.

    Under ``torchrun`` every process trains its shard of each batch (DDP) and only rank 0
    logs and writes; the others return an empty dict."""
    params, tuned = apply_best_params(params, paths, overridden)
    with process_group(params) as shard:
        if shard.world_size > 1 and params.train.affinity.enabled:
            params = overlay(params, {"train.affinity.enabled": False}, source="DDP")
            if shard.rank == 0:
                print("train: no task affinity under DDP (it steps the model outside DDP)")
        return _train(params, tuned, paths, shard, project_run)


def _train(
    params: Params,
    tuned: dict[str, Any] | None,
    paths: ProjectPaths,
    shard: Shard,
    project_run: str | None,
) -> dict[str, object]:
    tasks = params.task_specs()
    train_data = load_split(paths, "train", tasks)
    val_data = load_split(paths, "val", tasks)
    input_specs = load_input_specs(paths)
    policy = resolve_augmentation(params)  # fails before training
    start = check_backbone(params, input_specs)
    checkpoint = _checkpoint(params, paths, shard)
    if shard.rank != 0:  # trains its shard; rank 0 logs and writes
        fit(params, train_data, val_data, policy, (), input_specs, shard, checkpoint)
        return {}
    print(policy.describe())

    # a runs table tells trainings apart by name: what trained, on which split
    name = (
        f"train {params.train.weighting.method} {params.model.backbone.name} "
        f"{params.model.architecture.name} split-{split_digest(paths)[:7]}"
    )
    resumed = checkpoint is not None and checkpoint.state is not None
    interrupted = checkpoint.tags.get("run_id") if resumed else None
    with tracking.training_run(
        params, paths.root, name, project_run=project_run, resume_run=interrupted
    ) as run:
        mlflow.set_tags({"mtlflow.stage": "train", "data.split_sha256": split_digest(paths)})
        if checkpoint is not None:
            checkpoint.tags["run_id"] = run.info.run_id
        if resumed:
            mlflow.set_tag("mtlflow.resumed_after_epoch", str(checkpoint.epoch))
        if start is not None:  # where the backbone's weights came from, and what matched
            mlflow.set_tag("mtlflow.backbone_start", start.summary()[:5000])
        if tuned is not None:
            mlflow.set_tags({"optuna.study": tuned["study"], "optuna.trial": tuned["trial"]})
            mlflow.log_artifact(str(paths.best_params))
        tracking.log_split_dataset(paths.splits_dir / "train.csv", "training")
        tracking.log_split_dataset(paths.splits_dir / "val.csv", "validation")
        log_augmentation(params, policy, tasks, train_data, paths)
        ddp = f" x {shard.world_size} processes (DDP)" if shard.world_size > 1 else ""
        device = device_for(params, shard)
        print(
            f"train: {len(train_data[1])} train / {len(val_data[1])} val samples, "
            f"{len(tasks)} tasks, "
            f"weighting {params.train.weighting.method}, device {device} "
            f"({acceleration_for(params, device, shard).describe()})"
            f"{ddp}, MLflow run {run.info.run_id}"
        )
        callbacks = [
            tracking.EpochPrinter(),
            # a resumed training logged its first epochs to the interrupted run: into any
            # other run (a new flow run's) they are logged again
            tracking.MlflowEpochLogger(replay=interrupted != run.info.run_id),
            gates.GateWeightsLogger(),
        ]
        fitted = fit(
            params, train_data, val_data, policy, callbacks, input_specs, shard, checkpoint
        )
        result = fitted.result
        mlflow.log_metrics({"best_epoch": result.best_epoch, "best_val_score": result.best_score})
        print(f"train: best val/score {result.best_score:.4f} at epoch {result.best_epoch}")

        curves = paths.plots_dir / "learning_curves.png"
        plots.save(plots.learning_curves(result.history), curves)
        plot_data.write_learning_curves(result.history, paths)  # what `dvc plots` draws
        mlflow.log_artifact(str(curves), artifact_path="plots")
        if result.history[-1].gradient_cosine is not None:  # gradient methods only
            plots.log_figure(plots.gradient_cosine(result.history), "plots/gradient_cosine.png")
        gates.log_gate_weights(result.history)  # gated architectures only
        affinity = write_affinity_report(params, [t.name for t in tasks], result, paths)
        plot_data.write_affinity(affinity, paths)
        if affinity.get("enabled"):
            mlflow.log_artifact(str(paths.affinity_file))
            mlflow.log_artifact(str(paths.plots_dir / "affinity.png"), artifact_path="plots")

        # the input example: the first validation rows, from the arrays already in memory
        example = example_request(fitted.spec, val_data[0], paths.splits_dir / "val.csv")
        with atomic_dir(paths.models_dir) as scratch:
            save_checkpoint(fitted.model.cpu(), fitted.spec, scratch)
            info = log_pyfunc_model(scratch, example)
            run_info = {
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "model_uri": info.model_uri,
                "best_epoch": result.best_epoch,
                "best_val_score": result.best_score,
                # what trained it (a tuned method may differ from params.yaml's): evaluate
                # reads it here rather than asking the tracking server
                "weighting": params.train.weighting.method,
            }
            write_json(scratch / paths.run_info.name, run_info)
    if checkpoint is not None:
        checkpoint.discard()  # the model is written: nothing left to resume
    return run_info


def _checkpoint(params: Params, paths: ProjectPaths, shard: Shard) -> Checkpoint | None:
    """Where this training saves its state after every epoch (``train.resume``), holding the
    state of an interrupted run of the same params, split and process count, if any."""
    if not params.train.resume:
        return None
    settings = params.model_dump(by_alias=True, mode="json")
    del settings["train"]["resume"]
    what = json.dumps([settings, split_digest(paths), shard.world_size], sort_keys=True)
    fingerprint = hashlib.sha256(what.encode()).hexdigest()
    return Checkpoint.open(paths.train_checkpoint, fingerprint, write=shard.rank == 0)
