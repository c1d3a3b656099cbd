"""Single-task baselines: params for a model that learns one task alone, on the same
backbone, budget and split, so ``evaluate`` can report Δm (does sharing help each task?)."""

from __future__ import annotations

from pipelines.config import Params, params_dict, parse_params


def single_task_params(params: Params, task: str) -> Params:
    """``params`` for a model that learns ``task`` alone.

    The backbone, heads, optimiser, epochs, early stopping and augmentation requests stay; what
    only means something with several tasks goes: the weighting (one loss needs none), task
    affinity, and augmentation remaps. With one task a remap could only move its label to a task
    that is not there, so a transform that needs one (a horizontal flip for a ``_left`` task) is
    excluded by the task's own ``sensitive_to``, as for any transform that would change it.
    """
    raw = params_dict(params)
    raw["tasks"] = {task: raw["tasks"][task]}
    raw["train"]["weighting"] = {"method": "equal"}
    raw["train"]["affinity"]["enabled"] = False
    raw["augment"]["remaps"] = {}
    raw["tune"] |= {"enabled": False, "search_space": {}}
    return parse_params(raw, source=f"single-task params for {task}", check_space=False)
