"""The tune stage in process: a real SQLite study, real training, real MLflow nested runs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from pipelines import stages
from pipelines.config import Params, load_params
from pipelines.data.splits import load_split
from pipelines.errors import ConfigError
from pipelines.files import ProjectPaths
from pipelines.services.best_params import study_name
from pipelines.services.study import FINISHED, open_storage
from pipelines.services.study import default_values as _defaults
from pipelines.services.trials import Objective
from tests.conftest import tiny_params_dict, write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project with its splits written, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params(write_params(root, tiny_params_dict(root)))
        stages.prepare(params, ProjectPaths(root))
        stages.split(params, ProjectPaths(root))
    return root


@pytest.fixture
def root(prepared: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(prepared)  # MLflow writes artifacts under ./mlruns
    return prepared


def params_for(root: Path, db: str, *overrides: str) -> Params:
    return load_params(root / "params.yaml", [f"tune.storage=sqlite:///{root / db}", *overrides])


def load(params: Params) -> optuna.Study:
    return optuna.load_study(study_name=study_name(params), storage=params.tune.storage)


def child_runs(params: Params, parent_id: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(params.tracking.uri)
    return client.search_runs(
        [r.info.experiment_id for r in [client.get_run(parent_id)]],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
    )


def latest_tune_run(params: Params) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`mtlflow.stage` = 'tune'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0]


def test_every_trial_is_a_nested_mlflow_run_and_the_best_goes_to_best_params(root):
    params = params_for(root, "nested.db", "tune.n_trials=3", "tune.epochs=2")
    paths = ProjectPaths(root)
    content = stages.tune(params, paths)

    study = load(params)
    finished = [t for t in study.trials if t.state in FINISHED]
    assert len(finished) == 3
    # trial 0 is params.yaml's own values (where they lie in the search space)
    defaults = _defaults(params)
    assert "train.lr" in defaults and defaults.items() <= study.trials[0].params.items()
    complete = [t for t in study.trials if t.state is TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    written = yaml.safe_load(paths.best_params.read_text())
    assert written == content
    assert written["trial"] == best.number
    assert written["value"] == pytest.approx(best.value, abs=1e-6)
    assert written["params"] == best.params
    assert set(written["params"]) <= set(params.tune.search_space)
    assert set(written["val_scores"]) == set(params.tasks)

    parent = latest_tune_run(params)
    assert parent.data.tags["optuna.study"] == study.study_name
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.params["best.train.lr"] == str(best.params["train.lr"])
    client = mlflow.MlflowClient(params.tracking.uri)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "tune")}
    assert {"tune/trials.csv", "tune/optimization_history.png"} <= artifacts
    assert (paths.tune_dir / "trials.csv").read_text().count("\n") == len(study.trials) + 1

    children = child_runs(params, parent.info.run_id)
    assert len(children) == 3
    by_trial = {int(r.data.tags["optuna.trial"]): r for r in children}
    for trial in finished:
        run = by_trial[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["optuna.state"] == trial.state.name
        assert run.data.params["train.epochs"] == "2"  # the trial budget, not train.epochs
        for key, value in trial.params.items():
            assert run.data.params[key] == str(value)
        history = client.get_metric_history(run.info.run_id, "val/pits_left/score")
        assert [m.step for m in history] == list(range(1, len(trial.intermediate_values) + 1))


def test_running_again_continues_the_study_and_more_trials_extend_it(root, capsys):
    paths = ProjectPaths(root)
    first = params_for(root, "resume.db", "tune.n_trials=2", "tune.epochs=1")
    stages.tune(first, paths)
    before = {t.number: (t.params, t.values) for t in load(first).trials}
    assert len(before) == 2

    stages.tune(first, paths)  # nothing left to do
    assert "2 finished trials, 0 to run" in capsys.readouterr().out
    assert len(load(first).trials) == 2

    more = params_for(root, "resume.db", "tune.n_trials=4", "tune.epochs=1")
    assert study_name(more) == study_name(first)  # n_trials is not part of the study
    stages.tune(more, paths)
    study = load(more)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert sum(t.state in FINISHED for t in study.trials) == 4
    for number, (values, objective) in before.items():
        assert (study.trials[number].params, study.trials[number].values) == (values, objective)
    assert "2 finished trials, 2 to run" in capsys.readouterr().out


def test_a_pruned_trial_is_tagged_and_its_run_reads_as_pruned_not_killed(root):
    params = params_for(root, "pruned.db", "tune.epochs=3")
    tasks, paths = params.task_specs(), ProjectPaths(root)
    splits = load_split(paths, "train", tasks), load_split(paths, "val", tasks)
    objective = Objective(params, *splits)
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(lower=2.0))  # always
    mlflow.set_tracking_uri(params.tracking.uri)
    mlflow.set_experiment(params.tracking.experiment)
    with mlflow.start_run() as parent:
        study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state is TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]  # stopped after the first epoch
    (run,) = child_runs(params, parent.info.run_id)
    assert run.data.tags["optuna.state"] == "PRUNED"
    # KILLED would read as a crash next to real kills: the search ended it on purpose
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "trial-0 (pruned)"


def test_a_sampled_combination_that_is_not_valid_fails_that_trial_only(root):
    space = [
        "tune.search_space={model.backbone.depth: {low: 1, high: 2}, "
        "model.shared_depth: {low: 1, high: 2}}"
    ]
    params = params_for(root, "invalid.db", "tune.n_trials=2", "tune.epochs=1", *space)
    bad = optuna.create_study(
        study_name=study_name(params), storage=open_storage(params), direction="maximize"
    )
    bad.enqueue_trial({"model.backbone.depth": 1, "model.shared_depth": 2})
    stages.tune(params, ProjectPaths(root))
    study = load(params)
    failed = [t for t in study.trials if t.state is TrialState.FAIL]
    assert failed[0].number == 0
    for trial in failed:
        assert trial.params == {"model.backbone.depth": 1, "model.shared_depth": 2}
        assert "shared_depth 2 exceeds backbone.depth 1" in trial.user_attrs["fail_reason"]
    assert sum(t.state in FINISHED for t in study.trials) == 2


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_per_task_objective_keeps_a_pareto_front(root, sampler):
    params = params_for(
        root,
        f"pareto-{sampler}.db",
        "tune.n_trials=3",
        "tune.epochs=1",
        "tune.objective=per_task",
        f"tune.sampler.name={sampler}",
    )
    content = stages.tune(params, ProjectPaths(root))
    study = load(params)
    assert len(study.directions) == len(params.tasks)
    front = {t.number for t in study.best_trials}
    assert {p["trial"] for p in content["pareto_front"]} == front
    assert content["trial"] in front
    assert all(set(p["values"]) == set(params.tasks) for p in content["pareto_front"])
    assert (ProjectPaths(root).tune_dir / "pareto_front.png").stat().st_size > 0


def test_disabled_tune_writes_empty_best_params(root):
    params = params_for(root, "off.db", "tune.enabled=false")
    content = stages.tune(params, ProjectPaths(root))
    assert content["params"] == {}
    assert yaml.safe_load(ProjectPaths(root).best_params.read_text())["params"] == {}
    assert not (root / "off.db").exists()  # no study was opened


def test_a_bad_storage_url_fails_before_any_trial(root):
    params = load_params(root / "params.yaml", ["tune.storage=nosuchdb://x/y"])
    before = latest_tune_run(params).info.run_id if _has_tune_runs(params) else None
    with pytest.raises(ConfigError, match=r"tune.storage 'nosuchdb://x/y'"):
        stages.tune(params, ProjectPaths(root))
    after = latest_tune_run(params).info.run_id if _has_tune_runs(params) else None
    assert after == before  # no MLflow run was started


def _has_tune_runs(params: Params) -> bool:
    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    if experiment is None:
        return False
    return bool(client.search_runs([experiment.experiment_id], "tags.`mtlflow.stage` = 'tune'"))


def test_train_applies_the_tuned_values(root, capsys):
    paths = ProjectPaths(root)
    params = params_for(root, "apply.db", "tune.n_trials=2", "tune.epochs=1")
    content = stages.tune(params, paths)
    stages.train(params, paths)
    assert "tuned params from" in capsys.readouterr().out
    client = mlflow.MlflowClient(params.tracking.uri)
    run_id = yaml.safe_load((paths.run_info).read_text())["run_id"]
    logged = client.get_run(run_id).data
    for key, value in content["params"].items():
        assert logged.params[key] == str(value)
    assert logged.tags["optuna.trial"] == str(content["trial"])


def test_a_skipped_tune_still_writes_every_output_dvc_declares(project):
    """dvc.yaml declares reports/tune: a skipped search leaves it, saying why, or
    `dvc repro` fails with "output 'reports/tune' does not exist"."""
    params, paths = project
    params = load_params(paths.root / "params.yaml", ["tune.enabled=false"])
    content = stages.tune(params, paths)
    assert content["skipped"] == "tune.enabled is false"
    assert (paths.tune_dir / "SKIPPED").read_text() == "tune skipped: tune.enabled is false\n"
    assert paths.best_params.is_file()
