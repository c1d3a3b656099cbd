"""``tune.sampler``: each name builds its Optuna sampler; ``qmc`` draws the same values
whatever the earlier trials scored, so a pruned search trains the unpruned search's values."""

from __future__ import annotations

import warnings

import optuna
import pytest

from pipelines.config import Params, params_dict
from pipelines.errors import ConfigError
from pipelines.services.study import make_sampler
from pipelines.services.trials import sample
from tests.conftest import shipped_tune_params


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("qmc", optuna.samplers.QMCSampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("random", optuna.samplers.RandomSampler),
    ],
)
def test_each_sampler_name_builds_its_sampler(name, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's "experimental" notice stays out of the log
        assert isinstance(make_sampler(shipped_tune_params(sampler={"name": name}), seed=0), kind)


def test_unknown_sampler_is_rejected():
    with pytest.raises(ConfigError, match="sampler"):
        shipped_tune_params(sampler={"name": "cmaes"})


def draws(params: Params, seed: int, prune_every: int | None, n: int = 10) -> list[dict]:
    """The values ``n`` trials of the shipped search space get; with ``prune_every``, every
    such trial is pruned at its first report and the others get a fixed, varied score."""
    study = optuna.create_study(
        direction="maximize",
        sampler=make_sampler(params, seed),
        pruner=optuna.pruners.ThresholdPruner(lower=0.5),
    )
    base = params_dict(params)  # what `when` conditions read, as in `Objective`
    scores = iter([0.9, 0.2, 0.7, 0.4, 0.8, 0.1, 0.6, 0.3, 0.95, 0.05])
    values = []
    for number in range(n):
        trial = study.ask()
        values.append(sample(trial, params.tune.search_space, base))
        score = next(scores)
        if prune_every and number % prune_every == 0:
            trial.report(0.0, 1)
            assert trial.should_prune()
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, score)
    return values


def test_qmc_draws_do_not_depend_on_earlier_results():
    params = shipped_tune_params(sampler={"name": "qmc"})
    unpruned = draws(params, seed=0, prune_every=None)
    assert draws(params, seed=0, prune_every=2) == unpruned
    assert draws(params, seed=0, prune_every=3) == unpruned
    # a different seed scrambles the sequence differently
    assert draws(params, seed=1, prune_every=None) != unpruned


def test_qmc_covers_every_choice_early():
    # a low-discrepancy sequence: 8 trials already try both batch sizes and every method
    values = draws(shipped_tune_params(sampler={"name": "qmc"}), seed=0, prune_every=None, n=8)
    assert {v["train.batch_size"] for v in values} == {32, 64}
    assert {v["train.weighting.method"] for v in values} == {"equal", "uw", "dwa"}


def test_tpe_draws_follow_the_results():
    # the contrast that makes tpe a poor arm for measuring pruning: its later draws change
    # when earlier trials are pruned instead of scored
    params = shipped_tune_params(sampler={"name": "tpe", "n_startup_trials": 2})
    assert draws(params, seed=0, prune_every=2) != draws(params, seed=0, prune_every=None)
