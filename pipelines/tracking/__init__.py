"""MLflow: where runs go, what they record, and the trainer callbacks that log epochs."""

from pipelines.tracking.orphans import close_orphaned_runs, owner_tags
from pipelines.tracking.runs import (
    EXPERIMENT_KIND,
    TRAINING_VIEW,
    EpochPrinter,
    MlflowEpochLogger,
    configure,
    flatten,
    git_commit,
    log_split_dataset,
    mark_model_training,
    resumed_run,
    run_url,
    task_metric_values,
    tracking_uri,
    training_run,
)

__all__ = [
    "EXPERIMENT_KIND",
    "TRAINING_VIEW",
    "EpochPrinter",
    "MlflowEpochLogger",
    "close_orphaned_runs",
    "configure",
    "flatten",
    "git_commit",
    "log_split_dataset",
    "mark_model_training",
    "owner_tags",
    "resumed_run",
    "run_url",
    "task_metric_values",
    "tracking_uri",
    "training_run",
]
