"""metrics: values checked against arithmetic written out here, never against sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_models.metrics import confusion, delta_m, majority_labels, summarize, task_metrics
from mtl_models.tasks import TaskSpec

NAN = float("nan")
CLASSIFICATION = TaskSpec("kind_of_part", "classification", n_classes=3)
BINARY = TaskSpec("defective", "binary")
ORDINAL = TaskSpec("rating", "ordinal", n_classes=6)
REGRESSION = TaskSpec("depth_um", "regression")


def test_classification_metrics_equal_hand_computed_values() -> None:
    y = [0, 0, 0, 1, 1, 2]
    p = [0, 0, 1, 1, 2, 2]
    m = task_metrics(CLASSIFICATION, y, p)
    # hits at rows 0, 1, 3, 5
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recall per class: 2/3, 1/2, 1/1
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precision per class: 2/2, 1/2, 1/2 -> F1: 4/5, 1/2, 2/3
    assert m["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert m["score"] == m["balanced_accuracy"]
    assert m["kind"] == "classification"
    assert m["n"] == 6
    # majority predictor (class 0): recall 1, 0, 0
    assert m["majority_baseline"] == pytest.approx(1 / 3)
    assert m["majority_accuracy"] == pytest.approx(3 / 6)
    assert m["collapsed"] is False


def test_binary_metrics_equal_hand_computed_values() -> None:
    y = [0, 0, 0, 0, 1, 1]
    p = [0, 0, 0, 1, 1, 0]
    m = task_metrics(BINARY, y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    # class 0: precision 3/4, recall 3/4 -> F1 3/4; class 1: precision 1/2, recall 1/2 -> 1/2
    assert m["macro_f1"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["score"] == pytest.approx(5 / 8)
    assert m["majority_baseline"] == pytest.approx(1 / 2)
    assert m["majority_accuracy"] == pytest.approx(4 / 6)


def test_ordinal_metrics_equal_hand_computed_values() -> None:
    y = [0, 1, 2, 2]
    p = [0, 2, 2, 1]
    m = task_metrics(ORDINAL, y, p)
    # QWK = 1 - sum(w*O) / sum(w*E), w = (i - j)^2 (its normalisation cancels).
    # Observed pairs (0,0) (1,2) (2,2) (2,1): sum(w*O) = 0 + 1 + 0 + 1 = 2.
    # Marginals y: {0: 1, 1: 1, 2: 2}, p: {0: 1, 1: 1, 2: 2}; E = outer(y, p) / 4:
    #   row 0: 1*1*1 + 4*1*2 = 9; row 1: 1*1*1 + 1*1*2 = 3; row 2: 4*2*1 + 1*2*1 = 10 -> 22 / 4
    assert m["qwk"] == pytest.approx(1 - 2 / (22 / 4))
    assert m["qwk"] == pytest.approx(7 / 11)
    assert m["mae"] == pytest.approx((0 + 1 + 0 + 1) / 4)
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["score"] == m["qwk"]
    # a constant predictor has observed == expected agreement: kappa 0
    assert m["majority_baseline"] == pytest.approx(0.0)
    assert m["majority_accuracy"] == pytest.approx(2 / 4)


def test_ordinal_qwk_uses_level_distance_when_levels_are_absent() -> None:
    y = [0, 0, 1, 5]
    p = [0, 1, 5, 5]
    # Level distances: sum(w*O) = 0 + 1 + 16 + 0 = 17.
    # Marginals y: {0: 2, 1: 1, 5: 1}, p: {0: 1, 1: 1, 5: 2}; sum(w*outer(y, p)):
    #   y=0: 1*2*1 + 25*2*2 = 102; y=1: 1*1*1 + 16*1*2 = 33; y=5: 25*1*1 + 16*1*1 = 41 -> 176
    expected = 1 - 17 / (176 / 4)  # 27/44 = 0.614; ranks 0,1,2 instead of 0,1,5 give 9/13
    assert task_metrics(ORDINAL, y, p)["qwk"] == pytest.approx(expected)


def test_ordinal_perfect_and_constant_agreement() -> None:
    assert task_metrics(ORDINAL, [0, 1, 3, 5], [0, 1, 3, 5])["qwk"] == pytest.approx(1.0)
    # one value everywhere: kappa is undefined and reported as 0
    m = task_metrics(ORDINAL, [2, 2, 2], [2, 2, 2])
    assert m["qwk"] == 0.0
    assert m["accuracy"] == 1.0


def test_regression_metrics_equal_hand_computed_values() -> None:
    y = [1.0, 2.0, 3.0, 4.0]
    p = [1.5, 2.0, 2.5, 5.0]
    m = task_metrics(REGRESSION, y, p)
    # errors 0.5, 0, -0.5, 1
    assert m["mae"] == pytest.approx((0.5 + 0 + 0.5 + 1) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 0.25 + 1) / 4))
    # SS_res = 1.5; mean 2.5 -> SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert m["r2"] == pytest.approx(1 - 1.5 / 5)
    assert m["score"] == m["r2"]
    assert m["majority_baseline"] == pytest.approx(0.0)  # the mean predictor has r2 = 0
    assert "majority_accuracy" not in m
    assert m["collapsed"] is False


def test_regression_majority_argument_is_the_baseline_constant() -> None:
    m = task_metrics(REGRESSION, [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 5.0], majority=1.5)
    # constant 1.5: SS_res = 0.25 + 0.25 + 2.25 + 6.25 = 9, SS_tot = 5
    assert m["majority_baseline"] == pytest.approx(1 - 9 / 5)


def test_discrete_majority_argument_is_the_baseline_constant() -> None:
    y = [0, 0, 0, 1, 1, 2]
    p = [0, 0, 1, 1, 2, 2]
    assert task_metrics(CLASSIFICATION, y, p)["majority_accuracy"] == pytest.approx(3 / 6)
    given = task_metrics(CLASSIFICATION, y, p, majority=2.0)
    assert given["majority_accuracy"] == pytest.approx(1 / 6)
    assert given["majority_baseline"] == pytest.approx(1 / 3)  # recall 0, 0, 1
    ordinal = task_metrics(ORDINAL, [0, 1, 1, 4], [0, 1, 1, 4], majority=4.0)
    assert ordinal["majority_accuracy"] == pytest.approx(1 / 4)


def test_missing_labels_are_masked() -> None:
    y = [0, NAN, 1, NAN, 1]
    p = [0, 1, 1, 0, 0]  # rows 1 and 3 would be wrong if they counted
    m = task_metrics(BINARY, y, p)
    assert m["n"] == 3
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 / 2) / 2)

    r = task_metrics(REGRESSION, [1.0, NAN, 3.0], [1.0, 100.0, 3.0])
    assert r["n"] == 2
    assert r["mae"] == 0.0
    assert r["r2"] == 1.0


@pytest.mark.parametrize(
    "task", [CLASSIFICATION, BINARY, ORDINAL, REGRESSION], ids=lambda t: t.kind
)
def test_no_labelled_row_gives_nan_scores(task: TaskSpec) -> None:
    m = task_metrics(task, [NAN, NAN], [0, 1])
    assert m["n"] == 0
    assert math.isnan(m["score"])
    assert math.isnan(m["majority_baseline"])
    assert m["collapsed"] is False


SPREAD = [0] * 10 + [1] * 6 + [2] * 4  # top share 0.5


@pytest.mark.parametrize(
    ("y", "p", "collapsed"),
    [
        (SPREAD, [0] * 20, True),  # one class predicted, labels spread
        (SPREAD, [1] * 19 + [2], True),  # 19/20 = 0.95 of predictions in one class
        (SPREAD, [0] * 18 + [1, 2], False),  # 0.90: still varied
        (SPREAD, SPREAD, False),
        ([0] * 19 + [1], [0] * 20, False),  # labels themselves are 95% one class
    ],
    ids=["constant", "at-threshold", "below-threshold", "perfect", "labels-not-spread"],
)
def test_discrete_collapse_flag(y: list[int], p: list[int], collapsed: bool) -> None:
    assert task_metrics(CLASSIFICATION, y, p)["collapsed"] is collapsed


@pytest.mark.parametrize(
    ("y", "p", "collapsed"),
    [
        ([1.0, 2.0, 3.0, 4.0], [2.5, 2.5, 2.5, 2.5], True),
        ([1.0, 2.0, 3.0, 4.0], [2.50, 2.51, 2.49, 2.50], True),  # std 0.007 < 0.05 * 1.118
        ([1.0, 2.0, 3.0, 4.0], [2.0, 2.2, 2.8, 3.0], False),
        ([3.0, 3.0, 3.0], [3.0, 3.0, 3.0], False),  # labels have no spread
    ],
    ids=["constant", "tiny-spread", "spread", "constant-labels"],
)
def test_regression_collapse_flag(y: list[float], p: list[float], collapsed: bool) -> None:
    assert task_metrics(REGRESSION, y, p)["collapsed"] is collapsed


def test_confusion_counts_labelled_rows_with_all_classes() -> None:
    y = [0, 0, 1, NAN, 1]
    p = [0, 1, 1, 2, 1]
    expected = np.array([[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    np.testing.assert_array_equal(confusion(CLASSIFICATION, y, p), expected)


def test_summarize() -> None:
    per_task = {
        "b": {"score": 0.2, "majority_baseline": 0.5, "collapsed": True},
        "a": {"score": 0.8, "majority_baseline": 0.5, "collapsed": False},
        "c": {"score": NAN, "majority_baseline": NAN, "collapsed": False},
        "d": {"score": 0.5, "majority_baseline": 0.5, "collapsed": True},
    }
    summary = summarize(per_task)
    assert summary["mean_score"] == pytest.approx((0.2 + 0.8 + 0.5) / 3)  # NaN skipped
    assert summary["collapsed_tasks"] == ["b", "d"]
    assert summary["tasks_beating_majority"] == ["a"]  # a tie does not beat it


def test_summarize_without_any_score() -> None:
    summary = summarize({"a": {"score": NAN, "majority_baseline": NAN, "collapsed": False}})
    assert math.isnan(summary["mean_score"])
    assert summary["collapsed_tasks"] == []
    assert summary["tasks_beating_majority"] == []


def test_majority_labels() -> None:
    tasks = [
        TaskSpec("cls", "classification", n_classes=3),
        TaskSpec("reg", "regression"),
        TaskSpec("empty", "binary"),
        TaskSpec("tie", "binary"),
    ]
    labels = np.array(
        [
            [2.0, 1.0, NAN, 1.0],
            [2.0, 3.0, NAN, 0.0],
            [0.0, NAN, NAN, 1.0],
            [NAN, 8.0, NAN, 0.0],
        ]
    )
    out = majority_labels(labels, tasks)
    assert out == {"cls": 2.0, "reg": pytest.approx((1 + 3 + 8) / 3), "tie": 0.0}


def test_delta_m_equals_the_formula_on_hand_made_values():
    mtl = {"a": 0.9, "b": 0.5, "err": 2.0}
    single = {"a": 0.8, "b": 0.6, "err": 4.0}
    dm, gains = delta_m(mtl, single, lower_is_better={"err": True})
    # a: +0.1/0.8 = +0.125; b: -0.1/0.6 = -1/6; err (lower is better): -(2-4)/4 = +0.5
    assert gains == pytest.approx({"a": 0.125, "b": -1 / 6, "err": 0.5})
    assert dm == pytest.approx((0.125 - 1 / 6 + 0.5) / 3)


def test_delta_m_refuses_mismatched_tasks_and_a_zero_baseline():
    with pytest.raises(ValueError, match="same tasks"):
        delta_m({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match="single-task score is 0"):
        delta_m({"a": 1.0}, {"a": 0.0})
