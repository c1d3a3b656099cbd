"""``tune.pruner``: each name builds its Optuna pruner with the configured settings."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from pipelines.config import Params
from pipelines.errors import ConfigError
from pipelines.services.study import make_pruner
from tests.conftest import shipped_tune_params


def tune_params(pruner: dict[str, Any], epochs: int = 9) -> Params:
    """The shipped params.yaml with ``tune.pruner`` and ``tune.epochs`` replaced."""
    return shipped_tune_params(pruner=pruner, epochs=epochs)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_each_pruner_name_builds_its_pruner(name, kind):
    assert isinstance(make_pruner(tune_params({"name": name})), kind)


def test_hyperband_runs_from_min_resource_to_the_trial_budget():
    pruner = make_pruner(
        tune_params({"name": "hyperband", "min_resource": 2, "reduction_factor": 4}, epochs=16)
    )
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    # not "auto": the budget is known, so the first trials are bracketed from the start
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (2, 16, 4)


def test_hyperband_prunes_trials_that_fall_behind():
    epochs = 9
    params = tune_params({"name": "hyperband", "min_resource": 1}, epochs=epochs)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=make_pruner(params),
    )

    def objective(trial: optuna.Trial) -> float:
        quality = 1.0 / (1 + trial.number)  # each trial worse than the ones before
        for epoch in range(1, epochs + 1):
            trial.report(quality * epoch / epochs, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return quality

    study.optimize(objective, n_trials=30)
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    # cut short in the early brackets (the last bracket's only rung is the last epoch)
    assert any(t.last_step < epochs for t in pruned)
    assert study.best_trial.number == 0


def test_hyperband_min_resource_beyond_the_budget_is_rejected():
    with pytest.raises(ConfigError, match="min_resource 5 exceeds epochs 4"):
        tune_params({"name": "hyperband", "min_resource": 5}, epochs=4)


def test_successive_halving_min_resource_is_not_bound_to_the_budget():
    # unchanged behaviour: halving with a first rung past the budget simply never prunes
    params = tune_params({"name": "successive_halving", "min_resource": 5}, epochs=4)
    assert params.tune.pruner.min_resource == 5


def test_unknown_pruner_is_rejected():
    with pytest.raises(ConfigError, match="pruner"):
        tune_params({"name": "asha"})


def test_the_shipped_pruner_decides_at_epoch_2_and_keeps_the_best_quarter():
    # the shipped search: every trial's first epoch scores 0 (one level per task), so the
    # first decision falls on epoch 2, where a trial goes on only among the best so far
    params = shipped_tune_params()
    epochs = params.tune.epochs
    study = optuna.create_study(direction="maximize", pruner=make_pruner(params))
    quality = [0.9, 0.5, 0.95, 0.3, 0.6, 0.2, 0.7, 0.4, 0.1, 0.8, 0.35, 0.45]

    def objective(trial: optuna.Trial) -> float:
        q = quality[trial.number]
        for epoch in range(1, epochs + 1):
            trial.report(0.0 if epoch == 1 else q * epoch / epochs, epoch)
            if epoch < epochs and trial.should_prune():
                raise optuna.TrialPruned()
        return q

    study.optimize(objective, n_trials=len(quality))
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    assert {t.last_step for t in pruned} == {2}  # never on the uninformative epoch 1
    complete = {t.number for t in study.trials if t.state is TrialState.COMPLETE}
    # the first trial (nothing to compare with) and the best; every other trial is outside
    # the best quarter of the trials that reached epoch 2 before it
    assert complete == {0, 2}
