"""gradient_boosting: one HistGradientBoosting* model per task on a table, scored by the
network's own metric functions.

The table is made here: two inputs (so their columns are joined), a 3-class task and a
regression task, each with missing labels in every split. Expected scores come from
scikit-learn's metrics on the labelled test rows, computed here from the booster's predictions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.utils.class_weight import compute_class_weight
from threadpoolctl import threadpool_limits

from mtl_models.inputs import FeatureInput, ImageInput, SignalInput
from mtl_models.metrics import majority_labels, task_metrics
from mtl_models.tasks import TaskSpec
from pipelines.config import load_params
from pipelines.services.gradient_boosting import (
    MAX_ITER,
    ROUNDS_WITHOUT_VAL,
    Split,
    fit_booster,
    fit_gradient_boosting,
    gradient_boosting_baselines,
    make_booster,
    table,
    unsupported_inputs,
)

KIND = TaskSpec(name="kind", kind="classification", n_classes=3)
DEPTH = TaskSpec(name="depth", kind="regression")
TASKS = [KIND, DEPTH]
ROWS = {"train": slice(0, 240), "val": slice(240, 300), "test": slice(300, 360)}
SEED = 7


def _splits(imbalanced: bool = False) -> dict[str, Split]:
    """360 rows of 5 columns (inputs ``a``: 3, ``b``: 2); ``kind`` follows columns 0 and 1,
    ``depth`` columns 2 and 4; about 15% of each task's labels are missing."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(360, 5)).astype(np.float32)
    logits = np.stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]], axis=1)
    if imbalanced:  # class 2 becomes rare, so weighting its rows changes the trees
        logits[:, 2] -= 1.5
    kind = (logits + rng.normal(scale=0.5, size=logits.shape)).argmax(axis=1).astype(float)
    depth = 2 * x[:, 2] + x[:, 4] ** 2 + rng.normal(scale=0.3, size=360)
    labels = np.stack([kind, depth], axis=1)
    labels[rng.random(labels.shape) < 0.15] = np.nan
    return {
        name: ({"a": x[rows, :3], "b": x[rows, 3:]}, labels[rows]) for name, rows in ROWS.items()
    }


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The trees on one OpenMP thread: on a busy shared CPU, threads that spin waiting for
    each other made a fit of these 240 rows take seconds instead of a tenth of one."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLite MLflow store of its own (the tracking URI restored after)."""
    root = tmp_path_factory.mktemp("gbm-mlflow")
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    try:
        yield MlflowClient().create_experiment("gbm", artifact_location=str(root / "artifacts"))
    finally:
        mlflow.set_tracking_uri(before)


def _labelled(split: Split, t: int) -> tuple[np.ndarray, np.ndarray]:
    inputs, labels = split
    keep = ~np.isnan(labels[:, t])
    return np.concatenate([inputs["a"], inputs["b"]], axis=1)[keep], labels[keep, t]


def test_table_joins_the_inputs_columns_in_name_order():
    inputs, _ = _splits()["train"]
    joined = table({"b": inputs["b"], "a": inputs["a"]})
    assert joined.shape == (240, 5)
    np.testing.assert_array_equal(joined[:, :3], inputs["a"])
    np.testing.assert_array_equal(joined[:, 3:], inputs["b"])


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (KIND, HistGradientBoostingClassifier),
        (TaskSpec(name="ok", kind="binary"), HistGradientBoostingClassifier),
        (TaskSpec(name="grade", kind="ordinal", n_classes=6), HistGradientBoostingClassifier),
        (DEPTH, HistGradientBoostingRegressor),
    ],
    ids=["classification", "binary", "ordinal", "regression"],
)
def test_discrete_kinds_get_a_classifier_and_regression_a_regressor(task, expected):
    booster = make_booster(task, SEED, early_stopping=True)
    assert type(booster) is expected
    assert (booster.random_state, booster.max_iter, booster.early_stopping) == (
        SEED,
        MAX_ITER,
        True,
    )
    without_val = make_booster(task, SEED, early_stopping=False)
    assert (without_val.max_iter, without_val.early_stopping) == (ROUNDS_WITHOUT_VAL, False)


@pytest.mark.parametrize("t", [0, 1], ids=["classification", "regression"])
def test_the_booster_learns_the_labelled_train_rows_and_stops_on_the_labelled_val_rows(t):
    """Same trees as a booster fitted by hand on the rows that label the task, with the val
    split's labelled rows as its early-stopping set (sklearn refuses NaN labels outright)."""
    splits = _splits()
    booster = fit_booster(TASKS[t], t, splits, SEED, "none")
    by_hand = make_booster(TASKS[t], SEED, early_stopping=True)
    x_val, y_val = _labelled(splits["val"], t)
    by_hand.fit(*_labelled(splits["train"], t), X_val=x_val, y_val=y_val)
    x_test = table(splits["test"][0])
    np.testing.assert_array_equal(booster.predict(x_test), by_hand.predict(x_test))
    assert booster.early_stopping is True and 1 <= booster.n_iter_ < MAX_ITER


def test_balanced_class_weighting_weighs_each_row_by_its_class():
    splits = _splits(imbalanced=True)
    booster = fit_booster(KIND, 0, splits, SEED, "balanced")
    x, y = _labelled(splits["train"], 0)
    x_val, y_val = _labelled(splits["val"], 0)
    weights = compute_class_weight("balanced", classes=np.unique(y), y=y)
    by_hand = make_booster(KIND, SEED, early_stopping=True).fit(
        x,
        y,
        sample_weight=weights[y.astype(int)],
        X_val=x_val,
        y_val=y_val,
        sample_weight_val=weights[y_val.astype(int)],
    )
    unweighted = fit_booster(KIND, 0, splits, SEED, "none")
    x_test = table(splits["test"][0])
    np.testing.assert_array_equal(booster.predict(x_test), by_hand.predict(x_test))
    assert (booster.predict(x_test) != unweighted.predict(x_test)).any()


def test_a_val_split_without_usable_labels_fits_without_early_stopping():
    splits = _splits()
    inputs, labels = splits["val"]
    labels = labels.copy()
    labels[:, 0] = 2.0  # a class ...
    train_inputs, train_labels = splits["train"]
    train_labels = train_labels.copy()
    train_labels[train_labels[:, 0] == 2.0, 0] = 1.0  # ... that training never saw
    splits |= {"train": (train_inputs, train_labels), "val": (inputs, labels)}
    booster = fit_booster(KIND, 0, splits, SEED, "none")
    assert booster.early_stopping is False and booster.n_iter_ == ROUNDS_WITHOUT_VAL
    assert set(booster.classes_) == {0.0, 1.0}


@pytest.mark.parametrize("t", [0, 1], ids=["classification", "regression"])
def test_the_score_is_the_networks_metric_on_the_boosters_test_predictions(t, experiment):
    splits = _splits()
    task = TASKS[t]
    majority = majority_labels(splits["train"][1], TASKS)[task.name]
    with mlflow.start_run(experiment_id=experiment) as parent:
        entry = fit_gradient_boosting(task, t, splits, SEED, "none", majority, experiment)

    predictions = fit_booster(task, t, splits, SEED, "none").predict(table(splits["test"][0]))
    y = splits["test"][1][:, t]
    present = ~np.isnan(y)
    assert 0 < present.sum() < len(y)  # missing test labels are left out of the score
    assert entry["test"] == task_metrics(task, y, predictions, majority)
    if task.kind_plugin.discrete:
        assert entry["score"] == balanced_accuracy_score(y[present], predictions[present])
    else:
        assert entry["score"] == pytest.approx(r2_score(y[present], predictions[present]))
    assert entry["score"] > 0.5  # it learned the rule, not only the majority
    assert entry["metric"] == task.primary_metric
    assert entry["model"] == type(make_booster(task, SEED, True)).__name__
    assert entry["early_stopping"] is True and entry["n_iter"] < MAX_ITER

    run = MlflowClient().get_run(entry["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.tags["mtlflow.stage"] == "baseline"
    assert run.data.tags["mtlflow.baseline"] == "gradient_boosting"
    assert run.data.tags["mtlflow.task"] == task.name
    assert run.data.params["model.random_state"] == str(SEED)
    assert run.data.metrics[f"test/{task.name}/{task.primary_metric}"] == pytest.approx(
        entry["score"]
    )
    assert run.data.metrics["n_iter"] == entry["n_iter"]


def test_only_tables_are_supported():
    features = FeatureInput("readings", numeric=("t", "m"))
    signal = SignalInput("amplitude", channels=("a",), length=16)
    assert unsupported_inputs([features]) is None
    assert unsupported_inputs([features, signal, ImageInput("photo")]) == (
        "it reads table (features) inputs only, not 'amplitude' (signal), 'photo' (image)"
    )


def test_image_inputs_are_skipped_with_one_printed_line_and_a_note(project, capsys):
    params, _ = project  # the tiny defect images
    block = gradient_boosting_baselines(params, {}, [ImageInput("image")], experiment_id="0")
    assert block == {
        "enabled": False,
        "note": "gradient boosting skipped: it reads table (features) inputs only, "
        "not 'image' (image)",
    }
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"baselines: {block['note']}"]


def test_the_key_turns_it_off_without_a_word(project, capsys):
    params = load_params(Path("params.yaml"), ["baselines.gradient_boosting=false"])
    assert project[0].baselines.gradient_boosting is True  # the default
    block = gradient_boosting_baselines(params, {}, [ImageInput("image")], experiment_id="0")
    assert block == {"enabled": False, "note": "baselines.gradient_boosting is false"}
    assert capsys.readouterr().out == ""
