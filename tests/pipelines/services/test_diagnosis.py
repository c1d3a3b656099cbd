"""diagnosis: Δm against single-task baselines, the suggestions and ``reports/diagnosis.md``.

Every input is made here by hand: labels and predictions whose metrics (computed by the real
``task_metrics``) are worked out in the comments, and report dicts shaped like
``reports/baselines.json`` and ``reports/affinity.json``. Expected values are arithmetic
written out here, never values read back from the module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from mtl_models.metrics import majority_labels, summarize, task_metrics
from mtl_models.tasks import TaskSpec
from pipelines.services.comparison import compare_with_baselines, format_gains
from pipelines.services.diagnosis import (
    LAG,
    NEGATIVE_TRANSFER,
    PULLED_BACK,
    RARE_SHARE,
    Finding,
    find_issues,
)
from pipelines.services.diagnosis_report import diagnosis_markdown

NAN = float("nan")
GRADE = TaskSpec(name="grade", kind="ordinal", n_classes=4)
KIND = TaskSpec(name="kind", kind="classification", n_classes=3)
DEPTH = TaskSpec(name="depth", kind="regression")
TASKS = (GRADE, KIND, DEPTH)
N_TEST, N_TRAIN = 36, 48
SPLIT = "5e1f" * 16
OTHER_SPLIT = "0bad" * 16
ORDINAL_HINT = "declare `kind: ordinal`"


def _default_labels(n: int, low: float, high: float) -> dict[str, np.ndarray]:
    """Balanced discrete labels (grade: n/4 per level, kind: n/3 per class) and a ramp."""
    return {
        "grade": (np.arange(n) % 4).astype(float),
        "kind": (np.arange(n) % 3).astype(float),
        "depth": np.linspace(low, high, n),
    }


def _with_errors(y: np.ndarray, n_wrong: int, n_classes: int) -> np.ndarray:
    """``y`` with the first ``n_wrong`` samples of each class predicted as the next class."""
    p = y.copy()
    for c in range(n_classes):
        p[np.flatnonzero(y == c)[:n_wrong]] = (c + 1) % n_classes
    return p


@dataclass
class Case:
    tasks: tuple[TaskSpec, ...]
    labels: np.ndarray
    predictions: np.ndarray
    train_labels: np.ndarray

    @property
    def per_task(self) -> dict[str, dict[str, Any]]:
        majority = majority_labels(self.train_labels, list(self.tasks))
        return {
            task.name: task_metrics(
                task, self.labels[:, t], self.predictions[:, t], majority.get(task.name)
            )
            for t, task in enumerate(self.tasks)
        }

    def findings(
        self,
        weighting: str = "uw",
        affinity: dict[str, Any] | None = None,
        comparison: dict[str, Any] | None = None,
    ) -> list[Finding]:
        return find_issues(
            self.tasks,
            self.per_task,
            self.labels,
            self.predictions,
            self.train_labels,
            weighting,
            affinity,
            comparison,
        )

    def metrics(self, baselines: dict[str, Any] | None = None) -> dict[str, Any]:
        per_task = self.per_task
        return {
            "tasks": per_task,
            "summary": summarize(per_task),
            "baselines": compare_with_baselines(per_task, baselines, SPLIT),
        }

    def markdown(
        self,
        weighting: str = "uw",
        affinity: dict[str, Any] | None = None,
        baselines: dict[str, Any] | None = None,
    ) -> str:
        return diagnosis_markdown(
            self.tasks,
            self.metrics(baselines),
            self.labels,
            self.predictions,
            self.train_labels,
            weighting,
            "run-123",
            affinity,
        )


def _case(
    labels: dict[str, np.ndarray] | None = None,
    predictions: dict[str, np.ndarray] | None = None,
    train: dict[str, np.ndarray] | None = None,
    tasks: tuple[TaskSpec, ...] = TASKS,
) -> Case:
    """Test labels, perfect predictions and training labels, with columns overridden.

    By default every task is perfectly predicted: grade QWK 1, kind balanced accuracy 1,
    depth R² 1; majority baselines 0 (QWK), 1/3 and 0 (R²: train and test means are 4.5).
    """
    test = _default_labels(N_TEST, 1.0, 8.0) | (labels or {})
    pred = test | (predictions or {})
    train_cols = _default_labels(N_TRAIN, 0.0, 9.0) | (train or {})

    def stack(columns: dict[str, np.ndarray]) -> np.ndarray:
        return np.column_stack([np.asarray(columns[t.name], dtype=float) for t in tasks])

    return Case(tasks, stack(test), stack(pred), stack(train_cols))


def _lagging_kind() -> Case:
    # kind: 3 of 12 per class wrong -> recall 9/12 per class, balanced accuracy 0.75; the
    # others score 1.0, so 0.75 < 1.0 - LAG. Predictions stay spread (12 per class).
    return _case(predictions={"kind": _with_errors(np.arange(N_TEST) % 3.0, 3, 3)})


def _rare_kind() -> Case:
    # kind in training: 24 x 0, 23 x 1, 1 x 2 (2.08% < RARE_SHARE).
    # kind in test: 14 x 0, 15 x 1, 3 x 2 and 4 unlabelled rows; class 2 is predicted as 1,
    # and the unlabelled rows are predicted as 2 (they must not count anywhere).
    y = np.array([0] * 14 + [1] * 15 + [2] * 3 + [NAN] * 4)
    p = np.array([0] * 14 + [1] * 15 + [1] * 3 + [2] * 4, dtype=float)
    train = np.array([0] * 24 + [1] * 23 + [2] * 1, dtype=float)
    return _case(labels={"kind": y}, predictions={"kind": p}, train={"kind": train})


def _baselines(scores: dict[str, float], split: str = SPLIT) -> dict[str, Any]:
    metrics = {"grade": "qwk", "kind": "balanced_accuracy", "depth": "r2"}
    return {
        "enabled": True,
        "split_sha256": split,
        "epochs": 2,
        "mlflow_run_id": "baseline-run",
        "tasks": {name: {"metric": metrics[name], "score": s} for name, s in scores.items()},
    }


def _affinity(
    matrix: dict[str, dict[str, float | None]],
    groups: list[list[str]] | None = None,
) -> dict[str, Any]:
    return {
        "enabled": True,
        "every": 1,
        "matrix": matrix,
        "grouping": {
            "max_groups": 3,
            "groups": groups or [["grade", "kind"], ["depth"]],
            "score": 0.0,
            "exhaustive": True,
        },
    }


# every task helps every other one a little; the diagonal is None as in affinity.json
HEALTHY_MATRIX: dict[str, dict[str, float | None]] = {
    "grade": {"grade": None, "kind": 0.004, "depth": 0.002},
    "kind": {"grade": 0.003, "kind": None, "depth": 0.001},
    "depth": {"grade": 0.002, "kind": 0.005, "depth": None},
}


def _texts(findings: list[Finding], task: str) -> list[str]:
    return [f.text for f in findings if f.task == task]


def _section(markdown: str, task: str) -> str:
    start = markdown.index(f"\n### {task}\n")
    end = markdown.find("\n### ", start + 1)
    return markdown[start : end if end >= 0 else None]


def _table_after(text: str, marker: str) -> list[list[str]]:
    """Cells of the markdown table that follows ``marker``, without header and rule."""
    lines = text[text.index(marker) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


# ------------------------------------------------------------------ compare_with_baselines


def test_delta_m_equals_the_formula_for_three_tasks() -> None:
    per_task = _lagging_kind().per_task
    assert [per_task[n]["score"] for n in ("grade", "kind", "depth")] == pytest.approx(
        [1.0, 0.75, 1.0]
    )
    block = compare_with_baselines(
        per_task, _baselines({"grade": 0.8, "kind": 0.9, "depth": 0.5}), SPLIT
    )
    # grade: (1 - 0.8) / 0.8 = +0.25; kind: (0.75 - 0.9) / 0.9 = -1/6; depth: (1 - 0.5) / 0.5 = +1
    assert block["tasks"]["grade"]["gain"] == pytest.approx(0.25)
    assert block["tasks"]["kind"]["gain"] == pytest.approx(-1 / 6)
    assert block["tasks"]["depth"]["gain"] == pytest.approx(1.0)
    assert block["delta_m"] == pytest.approx((0.25 - 1 / 6 + 1.0) / 3)
    assert block["tasks"]["kind"] == {
        "metric": "balanced_accuracy",
        "multi_task": pytest.approx(0.75),
        "single_task": 0.9,
        "gain": pytest.approx(-1 / 6),
    }
    assert block["excluded"] == {}
    assert block["baselines_run_id"] == "baseline-run"
    assert "note" not in block


def test_tasks_without_a_positive_single_task_score_are_excluded_from_delta_m() -> None:
    per_task = _lagging_kind().per_task
    block = compare_with_baselines(
        per_task, _baselines({"grade": 0.8, "kind": 0.0, "depth": -0.2}), SPLIT
    )
    assert set(block["tasks"]) == {"grade"}
    assert block["delta_m"] == pytest.approx(0.25)  # grade alone
    assert set(block["excluded"]) == {"kind", "depth"}
    kind, depth = block["excluded"]["kind"], block["excluded"]["depth"]
    assert kind["difference"] == pytest.approx(0.75 - 0.0)
    assert depth["difference"] == pytest.approx(1.0 - (-0.2))
    assert depth["single_task"] == pytest.approx(-0.2)
    assert depth["multi_task"] == pytest.approx(1.0)
    assert "not positive" in kind["reason"]
    assert "not positive" in depth["reason"]


def test_a_nan_single_task_score_is_excluded() -> None:
    block = compare_with_baselines(
        _case().per_task, _baselines({"grade": 0.8, "kind": NAN, "depth": 0.5}), SPLIT
    )
    assert set(block["tasks"]) == {"grade", "depth"}
    assert "kind" in block["excluded"]
    assert block["delta_m"] == pytest.approx((0.25 + 1.0) / 2)


def test_no_positive_single_task_score_gives_a_note_and_the_exclusions() -> None:
    block = compare_with_baselines(
        _case().per_task, _baselines({"grade": 0.0, "kind": -0.1, "depth": -1.0}), SPLIT
    )
    assert "delta_m" not in block
    assert "no task has a positive single-task score" in block["note"]
    assert set(block["excluded"]) == {"grade", "kind", "depth"}


@pytest.mark.parametrize(
    ("baselines", "expected"),
    [
        (None, "no single-task baselines"),
        ({"enabled": False, "note": "baselines.enabled is false"}, "no single-task baselines"),
        (
            _baselines({"grade": 0.8, "kind": 0.9, "depth": 0.5}, split=OTHER_SPLIT),
            "trained on another split",
        ),
        (
            _baselines({"grade": 0.8, "kind": 0.9}),  # depth missing
            "covers tasks ['grade', 'kind'], the model ['depth', 'grade', 'kind']",
        ),
        (
            _baselines({"grade": 0.8, "kind": 0.9, "depth": 0.5})
            | {
                "tasks": {n: {"metric": "x", "score": 0.5} for n in ("grade", "kind", "depth", "x")}
            },
            "covers tasks ['depth', 'grade', 'kind', 'x']",
        ),
    ],
    ids=["missing", "disabled", "other-split", "fewer-tasks", "more-tasks"],
)
def test_baselines_that_cannot_be_compared_give_a_note(
    baselines: dict[str, Any] | None, expected: str
) -> None:
    block = compare_with_baselines(_case().per_task, baselines, SPLIT)
    assert "delta_m" not in block
    assert "tasks" not in block
    assert expected in block["note"]
    assert format_gains(block) == f"Δm: {block['note']}"


# ------------------------------------------------------------------ format_gains


def test_format_gains_has_a_row_per_task_and_the_delta_m_percentage() -> None:
    block = compare_with_baselines(
        _lagging_kind().per_task, _baselines({"grade": 0.8, "kind": 0.9, "depth": 0.5}), SPLIT
    )
    lines = format_gains(block).splitlines()
    assert len(lines) == 1 + 3 + 1  # header, three tasks, Δm
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert rows == {
        "grade": ["grade", "1.000", "0.800", "+25.0%"],
        "kind": ["kind", "0.750", "0.900", "-16.7%"],
        "depth": ["depth", "1.000", "0.500", "+100.0%"],
    }
    # (0.25 - 1/6 + 1) / 3 = 0.36111
    assert lines[-1].startswith("Δm = +36.11% over 3 tasks")


def test_format_gains_lists_excluded_tasks_without_a_gain() -> None:
    block = compare_with_baselines(
        _lagging_kind().per_task, _baselines({"grade": 0.8, "kind": 0.0, "depth": -0.2}), SPLIT
    )
    lines = format_gains(block).splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert rows["grade"] == ["grade", "1.000", "0.800", "+25.0%"]
    assert rows["kind"] == ["kind", "0.750", "0.000", "n/a"]
    assert rows["depth"] == ["depth", "1.000", "-0.200", "n/a"]
    assert lines[-1].startswith("Δm = +25.00% over 1 tasks")


# ------------------------------------------------------------------ find_issues


def test_healthy_tasks_have_no_findings_whatever_the_weighting() -> None:
    case = _case()
    comparison = compare_with_baselines(
        case.per_task, _baselines({"grade": 0.9, "kind": 0.9, "depth": 0.9}), SPLIT
    )
    for weighting in ("equal", "static", "uw"):
        assert case.findings(weighting, _affinity(HEALTHY_MATRIX), comparison) == []


@pytest.mark.parametrize(
    ("task", "hint"),
    [
        (TaskSpec(name="t", kind="classification", n_classes=3), True),
        (TaskSpec(name="t", kind="classification", n_classes=5), True),
        (TaskSpec(name="t", kind="classification", n_classes=2), False),
        (TaskSpec(name="t", kind="binary"), False),
        (TaskSpec(name="t", kind="ordinal", n_classes=4), False),
    ],
    ids=["classification-3", "classification-5", "classification-2", "binary", "ordinal"],
)
def test_collapsed_discrete_task_and_the_ordinal_hint(task: TaskSpec, hint: bool) -> None:
    assert task.n_classes is not None
    k = task.n_classes
    y = np.arange(30) % k
    p = np.zeros(30)  # always class 0 while labels are spread
    case = _case(
        labels={"t": y}, predictions={"t": p}, train={"t": np.arange(40) % k}, tasks=(task,)
    )
    assert case.per_task["t"]["collapsed"] is True
    findings = case.findings()
    assert [f.task for f in findings] == ["t"]
    text = findings[0].text
    # most common label: class 0, ceil(30 / k) of 30
    top = math.ceil(30 / k) / 30
    assert text.startswith(
        f"has collapsed: it predicts class 0 for 100% of test samples, while its most common "
        f"label covers only {top:.0%}."
    )
    assert (ORDINAL_HINT in text) is hint


def test_collapsed_regression_task() -> None:
    # predictions 4.5 +- 0.01: std 0.007 is under 5% of the labels' std (2.1)
    wobble = 4.5 + 0.01 * np.where(np.arange(N_TEST) % 2, 1.0, -1.0)
    case = _case(predictions={"depth": wobble})
    assert case.per_task["depth"]["collapsed"] is True
    findings = case.findings()
    assert [f.task for f in findings] == ["depth"]
    assert findings[0].text.startswith("has collapsed: its predictions barely vary")
    assert ORDINAL_HINT not in findings[0].text


def test_regression_with_some_spread_is_not_collapsed() -> None:
    # halfway to the mean: a spread of 50% of the labels', R² = 1 - 0.25 = 0.75
    y = np.linspace(1.0, 8.0, N_TEST)
    case = _case(predictions={"depth": 4.5 + 0.5 * (y - 4.5)})
    assert case.per_task["depth"]["score"] == pytest.approx(0.75)
    assert not any("collapsed" in t for t in _texts(case.findings(), "depth"))


def test_task_not_beating_its_majority_baseline() -> None:
    # every kind prediction is the next class: recall 0 everywhere, balanced accuracy 0,
    # against 1/3 for always predicting the training mode; predictions stay spread
    case = _case(predictions={"kind": (np.arange(N_TEST) + 1) % 3.0})
    assert case.per_task["kind"]["collapsed"] is False
    assert _texts(case.findings(), "kind") == [
        "does not beat its majority baseline (balanced_accuracy 0.000 vs 0.333 for always "
        "predicting the training mode)."
    ]


def test_a_tie_with_the_majority_baseline_does_not_beat_it() -> None:
    # class 0 right, class 1 predicted 2, class 2 predicted 0: recalls 1, 0, 0 give 1/3,
    # exactly the score of always predicting the training mode (class 0); 24/12 predictions
    # per class, so not collapsed
    y = np.arange(N_TEST) % 3.0
    case = _case(predictions={"kind": np.select([y == 1], [2.0], 0.0)})
    m = case.per_task["kind"]
    assert (m["score"], m["collapsed"]) == (m["majority_baseline"], False)
    texts = _texts(case.findings(), "kind")
    assert texts == [
        "does not beat its majority baseline (balanced_accuracy 0.333 vs 0.333 for always "
        "predicting the training mode)."
    ]


def test_regression_not_beating_its_majority_baseline() -> None:
    # reversed ramp: residual y - (9 - y) = 2 (y - 4.5), so R² = 1 - 4 = -3
    y = np.linspace(1.0, 8.0, N_TEST)
    texts = _texts(_case(predictions={"depth": 9.0 - y}).findings(), "depth")
    assert len(texts) == 1
    assert texts[0].startswith("does not beat its majority baseline (r2 -3.000 vs ")


def test_a_task_lagging_the_others_by_more_than_lag() -> None:
    case = _lagging_kind()
    assert 1.0 - LAG > 0.75
    assert _texts(case.findings(), "kind") == [
        "lags the other tasks (balanced_accuracy 0.750 vs their mean 1.000)."
    ]
    assert _texts(case.findings(), "grade") == []
    assert _texts(case.findings(), "depth") == []


def test_a_task_within_lag_of_the_others_does_not_lag() -> None:
    # 1 of 12 wrong per class: balanced accuracy 11/12 = 0.917 > 1.0 - LAG
    case = _case(predictions={"kind": _with_errors(np.arange(N_TEST) % 3.0, 1, 3)})
    assert case.per_task["kind"]["score"] == pytest.approx(11 / 12)
    assert case.findings(weighting="equal") == []


def test_rare_class_never_predicted_is_named_with_its_counts() -> None:
    texts = _texts(_rare_kind().findings(), "kind")
    rare = [t for t in texts if "rare class" in t]
    # 3 labelled test samples of class 2; 1 of 48 training labels = 2.08%
    assert len(rare) == 1
    assert rare[0].startswith(
        "never predicts its rare class 2 (3 in test, 2% of training labels): "
    )
    assert rare[0].endswith("or collect more samples of them.")


def test_class_weighting_advice_depends_on_whether_classes_are_weighted() -> None:
    weighted = TaskSpec(
        name="kind", kind="classification", n_classes=3, class_weights=(1.0, 1.0, 20.0)
    )
    unweighted_rare = _texts(_rare_kind().findings(), "kind")
    case = _rare_kind()
    weighted_rare = _texts(
        find_issues(
            (GRADE, weighted, DEPTH),
            case.per_task,
            case.labels,
            case.predictions,
            case.train_labels,
            "uw",
        ),
        "kind",
    )
    rare = [t for t in unweighted_rare if "rare class" in t]
    assert "`tasks.kind.class_weighting: balanced`" in rare[0]
    rare = [t for t in weighted_rare if "rare class" in t]
    assert "its classes are weighted already" in rare[0]
    assert "class_weighting" not in rare[0]

    collapsed = _case(predictions={"kind": np.zeros(N_TEST)})
    (plain,) = _texts(collapsed.findings(), "kind")
    (already,) = _texts(
        find_issues(
            (GRADE, weighted, DEPTH),
            collapsed.per_task,
            collapsed.labels,
            collapsed.predictions,
            collapsed.train_labels,
            "uw",
        ),
        "kind",
    )
    assert "`tasks.kind.class_weighting: balanced`" in plain
    assert "class_weighting" not in already
    assert ORDINAL_HINT in already


def test_several_rare_classes_are_named_together() -> None:
    # grade in training: 23 x 0, 23 x 1, 1 x 2, 1 x 3; in test levels 2 and 3 are predicted 1
    y = np.array([0] * 16 + [1] * 16 + [2] * 2 + [3] * 2, dtype=float)
    p = np.where(y >= 2, 1.0, y)
    train = np.array([0] * 23 + [1] * 23 + [2, 3], dtype=float)
    texts = _texts(
        _case(labels={"grade": y}, predictions={"grade": p}, train={"grade": train}).findings(),
        "grade",
    )
    assert (
        "never predicts its rare classes 2 (2 in test, 2% of training labels), "
        "3 (2 in test, 2% of training labels):" in " ".join(texts)
    )


@pytest.mark.parametrize(
    ("train", "y", "p"),
    [
        # class 2 is rare in training but predicted once in test
        (
            [0] * 24 + [1] * 23 + [2],
            [0] * 14 + [1] * 15 + [2] * 3,
            [0] * 14 + [1] * 15 + [1, 1, 2],
        ),
        # class 2 is never predicted but is 1/3 of the training labels: not rare
        ([0, 1, 2] * 16, [0] * 14 + [1] * 15 + [2] * 3, [0] * 14 + [1] * 15 + [1] * 3),
        # class 2 is rare and never predicted, but absent from the test labels
        ([0] * 24 + [1] * 23 + [2], [0] * 16 + [1] * 16, [0] * 16 + [1] * 16),
    ],
    ids=["predicted-once", "not-rare", "absent-from-test"],
)
def test_no_rare_class_finding(train: list[int], y: list[int], p: list[int]) -> None:
    pad = N_TEST - len(y)
    case = _case(
        labels={"kind": np.array(y + [NAN] * pad)},
        predictions={"kind": np.array(p + [0] * pad, dtype=float)},
        train={"kind": np.array(train, dtype=float)},
    )
    assert not any("rare class" in t for t in _texts(case.findings(), "kind"))


def test_a_collapsed_task_gets_the_collapse_finding_not_the_rare_class_one() -> None:
    # kind always predicts 0; class 2 is rare in training and present in test
    case = _case(
        predictions={"kind": np.zeros(N_TEST)},
        train={"kind": np.array([0] * 24 + [1] * 23 + [2], dtype=float)},
    )
    texts = _texts(case.findings(), "kind")
    assert len(texts) == 1
    assert texts[0].startswith("has collapsed")


def test_negative_transfer_names_the_single_task_score_and_the_affinity_group() -> None:
    case = _lagging_kind()
    comparison = compare_with_baselines(
        case.per_task, _baselines({"grade": 0.8, "kind": 0.9, "depth": 0.5}), SPLIT
    )
    affinity = _affinity(HEALTHY_MATRIX, groups=[["grade", "kind"], ["depth"]])
    texts = _texts(case.findings(affinity=affinity, comparison=comparison), "kind")
    transfer = [t for t in texts if t.startswith("is better learned alone")]
    assert len(transfer) == 1
    assert transfer[0].startswith(
        "is better learned alone: the single-task model scores 0.900 against 0.750 here "
        "(-16.7%), so sharing costs it."
    )
    assert transfer[0].endswith("or train it with its affinity group only (grade, kind).")
    # grade and depth gain: no transfer finding
    assert _texts(case.findings(affinity=affinity, comparison=comparison), "grade") == []

    # without affinity the group is not named
    alone = _texts(case.findings(comparison=comparison), "kind")
    assert any(t.startswith("is better learned alone") for t in alone)
    assert not any("affinity group" in t for t in alone)


def test_a_loss_to_the_single_task_model_within_noise_is_not_negative_transfer() -> None:
    case = _case()
    # grade and kind lose 0.5% to their single-task models: above NEGATIVE_TRANSFER
    st = 1.0 / 0.995
    comparison = compare_with_baselines(
        case.per_task, _baselines({"grade": st, "kind": st, "depth": 0.9}), SPLIT
    )
    assert comparison["tasks"]["grade"]["gain"] == pytest.approx(-0.005)
    assert comparison["tasks"]["grade"]["gain"] > NEGATIVE_TRANSFER
    assert case.findings(comparison=comparison) == []


def test_negative_transfer_alone_does_not_call_for_another_weighting() -> None:
    case = _case()
    comparison = compare_with_baselines(
        case.per_task, _baselines({"grade": 0.9, "kind": 1.0 / 0.8, "depth": 0.9}), SPLIT
    )
    findings = case.findings(weighting="equal", comparison=comparison)
    assert [f.task for f in findings] == ["kind"]
    assert "(-20.0%)" in findings[0].text


def test_a_task_pulled_back_by_the_others() -> None:
    matrix = {src: dict(row) for src, row in HEALTHY_MATRIX.items()}
    matrix["grade"]["kind"] = -0.004
    matrix["depth"]["kind"] = -0.002
    findings = _case().findings(affinity=_affinity(matrix, groups=[["grade", "kind"], ["depth"]]))
    # incoming to kind: (-0.004 - 0.002) / 2 = -0.003 < PULLED_BACK
    assert findings == [
        Finding(
            "kind",
            "is pulled back by the others: a step on another task raises its loss "
            "(mean incoming affinity -0.0030). The affinity grouping puts it with grade.",
        )
    ]


def test_incoming_affinity_reads_columns_skips_none_and_the_diagonal() -> None:
    matrix = {src: dict(row) for src, row in HEALTHY_MATRIX.items()}
    # kind's own row (its effect on the others) is strongly negative: that hurts grade,
    # not kind; kind's diagonal is strongly negative too, and is not "the others"
    matrix["kind"]["grade"] = -0.5
    matrix["kind"]["kind"] = -0.9
    # depth's column: one None and one -0.002; the mean over measured values is -0.002,
    # whereas counting None as 0 would give -0.001, which is not below PULLED_BACK
    matrix["grade"]["depth"] = None
    matrix["kind"]["depth"] = -0.002
    assert -0.002 < PULLED_BACK <= -0.001
    findings = _case().findings(affinity=_affinity(matrix, groups=[["grade"], ["kind", "depth"]]))
    assert [f.task for f in findings] == ["grade", "depth"]
    # grade: (-0.5 + 0.002) / 2 = -0.249; alone in its group
    assert "(mean incoming affinity -0.2490)" in findings[0].text
    assert findings[0].text.endswith("puts it with no other task.")
    assert "(mean incoming affinity -0.0020)" in findings[1].text
    assert findings[1].text.endswith("puts it with kind.")


def test_a_slightly_negative_incoming_affinity_is_not_pulled_back() -> None:
    matrix = {src: dict(row) for src, row in HEALTHY_MATRIX.items()}
    matrix["grade"]["kind"] = -0.0006
    matrix["depth"]["kind"] = -0.0004
    # mean -0.0005: negative, but above PULLED_BACK (within measurement noise)
    assert _case().findings(affinity=_affinity(matrix)) == []


def test_disabled_affinity_gives_no_affinity_findings() -> None:
    disabled = {"enabled": False, "note": "train.affinity.enabled is false"}
    assert _case().findings(affinity=disabled) == []


@pytest.mark.parametrize("weighting", ["equal", "static"])
def test_one_weighting_finding_lists_the_lagging_tasks(weighting: str) -> None:
    # grade does not beat its majority baseline (levels reversed: QWK -1), kind collapses
    # (always class 0), depth collapses (constant prediction): three ways to fall behind
    case = _case(
        predictions={
            "grade": 3.0 - np.arange(N_TEST) % 4,
            "kind": np.zeros(N_TEST),
            "depth": np.full(N_TEST, 4.5),
        }
    )
    findings = case.findings(weighting)
    assert [f.task for f in findings] == ["grade", "kind", "depth", "weighting"]
    assert findings[-1].text.startswith(
        f"`{weighting}` gives every loss a fixed share, and 3 task(s) fall behind "
        "(grade, kind, depth)"
    )


def test_a_lagging_task_alone_calls_for_another_weighting() -> None:
    findings = _lagging_kind().findings("equal")
    assert [f.task for f in findings] == ["kind", "weighting"]
    assert "1 task(s) fall behind (kind)" in findings[-1].text


@pytest.mark.parametrize("weighting", ["uw", "dwa", "upgrad", "pcgrad"])
def test_no_weighting_finding_for_adaptive_methods(weighting: str) -> None:
    case = _lagging_kind()
    findings = case.findings(weighting)
    assert [f.task for f in findings] == ["kind"]


def test_a_task_without_labelled_test_samples_is_reported_and_not_scored() -> None:
    case = _case(labels={"kind": np.full(N_TEST, NAN)})
    assert math.isnan(case.per_task["kind"]["score"])
    findings = case.findings(weighting="equal", affinity=_affinity(HEALTHY_MATRIX))
    assert findings == [Finding("kind", "has no labelled test samples: nothing measured.")]


def test_thresholds_are_the_documented_values() -> None:
    assert (NEGATIVE_TRANSFER, RARE_SHARE, LAG, PULLED_BACK) == (-0.01, 0.05, 0.10, -1e-3)


# ------------------------------------------------------------------ diagnosis_markdown


def test_markdown_title_summary_table_delta_m_affinity_and_suggestions() -> None:
    case = _lagging_kind()
    baselines = _baselines({"grade": 0.8, "kind": 0.9, "depth": 0.5})
    md = case.markdown("equal", _affinity(HEALTHY_MATRIX), baselines)
    lines = md.splitlines()
    # mean of 1.0, 0.75, 1.0
    assert lines[0] == "# Diagnosis: 3 tasks, mean test score 0.917"
    assert "MLflow run `run-123`, weighting `equal`. 3/3 tasks beat their majority" in md
    rows = _table_after(md, "| task | kind | metric |")
    assert rows == [
        ["grade", "ordinal", "qwk", "1.000", "0.000", "no", "0.800", "+25.0%"],
        ["kind", "classification", "balanced_accuracy", "0.750", "0.333", "no", "0.900", "-16.7%"],
        ["depth", "regression", "r2", "1.000", "0.000", "no", "0.500", "+100.0%"],
    ]
    assert "**Δm = +36.11%**" in md
    assert "Task groups by lookahead affinity (at most 3): grade, kind | depth." in md
    suggestions = md[md.index("## Suggestions") : md.index("## Per task")]
    assert "- **kind** lags the other tasks (balanced_accuracy 0.750 vs their mean 1.000)." in (
        suggestions
    )
    assert "- **kind** is better learned alone" in suggestions
    assert "- **weighting** `equal` gives every loss a fixed share" in suggestions
    assert "None:" not in suggestions
    assert [line for line in lines if line.startswith("### ")] == [
        "### grade",
        "### kind",
        "### depth",
    ]


@pytest.mark.parametrize(
    ("baselines", "expected"),
    [
        (None, "Δm: no single-task baselines;"),
        (
            _baselines({"grade": 0.8, "kind": 0.9, "depth": 0.5}, split=OTHER_SPLIT),
            "Δm: reports/baselines.json was trained on another split; run `mtlflow "
            "baselines` again.",
        ),
    ],
    ids=["missing", "other-split"],
)
def test_markdown_shows_the_note_when_there_is_no_delta_m(
    baselines: dict[str, Any] | None, expected: str
) -> None:
    md = _case().markdown(baselines=baselines)
    assert expected in md
    assert "**Δm" not in md
    # no gains: the single-task and gain columns are empty
    assert _table_after(md, "| task | kind | metric |")[0][-2:] == ["", ""]


def test_markdown_without_a_baselines_block_says_not_computed() -> None:
    case = _case()
    metrics = case.metrics()
    del metrics["baselines"]
    md = diagnosis_markdown(
        case.tasks, metrics, case.labels, case.predictions, case.train_labels, "uw", "r"
    )
    assert "Δm: not computed." in md
    assert "Task groups by lookahead affinity" not in md


def test_markdown_says_none_when_every_task_is_healthy() -> None:
    case = _case()
    md = case.markdown("equal", _affinity(HEALTHY_MATRIX))
    assert (
        "None: every task beats its majority baseline, none collapsed, none lags the others.\n"
        in md
    )
    assert "- **" not in md
    with_gains = case.markdown(baselines=_baselines({"grade": 0.9, "kind": 0.9, "depth": 0.9}))
    assert "none lags the others or loses more than 1% to its single-task model." in with_gains


def test_markdown_distribution_rows_count_labelled_samples_only() -> None:
    section = _section(_rare_kind().markdown(), "kind")
    # 32 labelled test samples (4 unlabelled rows, predicted 2, do not count)
    assert "classification, 32 labelled test samples; balanced_accuracy 0.667" in section
    rows = _table_after(section, "| class | 0 | 1 | 2 |")
    assert rows == [
        # 24/48, 23/48 = 47.9%, 1/48 = 2.1%
        ["labels, train", "24 (50%)", "23 (48%)", "1 (2%)"],
        # 14/32 = 43.75%, 15/32 = 46.9%, 3/32 = 9.4%
        ["labels, test", "14 (44%)", "15 (47%)", "3 (9%)"],
        # class 2 predicted as 1: 18/32 = 56.25%
        ["predictions, test", "14 (44%)", "18 (56%)", "0 (0%)"],
    ]


def test_markdown_confusion_matrix_rows_are_true_classes() -> None:
    case = _rare_kind()
    section = _section(case.markdown(), "kind")
    matrix = _table_after(section, "Confusion matrix (rows: true class, columns: predicted)")
    assert matrix == [
        ["0", "14", "0", "0"],
        ["1", "0", "15", "0"],
        ["2", "0", "3", "0"],
    ]
    # row sums are the test label counts per class (column sums would be 14, 18, 0)
    y = case.labels[:, 1]
    test_counts = np.bincount(y[~np.isnan(y)].astype(int), minlength=3)
    assert [sum(int(c) for c in row[1:]) for row in matrix] == test_counts.tolist()


def test_markdown_confusion_matrix_of_an_ordinal_task_with_errors() -> None:
    # grade: 9 per level; the first 2 of each level are predicted as the next level (3 -> 0)
    y = np.arange(N_TEST) % 4.0
    section = _section(_case(predictions={"grade": _with_errors(y, 2, 4)}).markdown(), "grade")
    matrix = _table_after(section, "Confusion matrix")
    assert matrix == [
        ["0", "7", "2", "0", "0"],
        ["1", "0", "7", "2", "0"],
        ["2", "0", "0", "7", "2"],
        ["3", "2", "0", "0", "7"],
    ]
    assert [sum(int(c) for c in row[1:]) for row in matrix] == [9, 9, 9, 9]


def test_markdown_regression_section_shows_the_prediction_mean() -> None:
    y = np.linspace(1.0, 8.0, N_TEST)
    section = _section(_case(predictions={"depth": y + 0.25}).markdown(), "depth")
    assert "Confusion matrix" not in section
    rows = {row[0]: row[1:] for row in _table_after(section, "| mean | std | p5 |")}
    assert set(rows) == {"labels, train", "labels, test", "predictions, test"}
    # labels: a ramp 1..8 around 4.5; predictions shifted by 0.25, same spread
    assert rows["labels, test"][0] == "4.5"
    assert rows["predictions, test"][0] == "4.75"
    assert rows["predictions, test"][3] == "4.75"  # median
    assert rows["predictions, test"][1] == rows["labels, test"][1]  # std unchanged by a shift
    assert rows["labels, train"][0] == "4.5"  # 0..9
    assert rows["labels, train"][2] == "0.45"  # p5 of 0..9: 0.05 * 9


def test_markdown_with_a_task_without_labelled_test_samples() -> None:
    case = _case(labels={"kind": np.full(N_TEST, NAN), "depth": np.full(N_TEST, NAN)})
    md = case.markdown("equal", _affinity(HEALTHY_MATRIX))
    assert "# Diagnosis: 3 tasks, mean test score 1.000" in md  # grade only
    kind = _section(md, "kind")
    assert "classification, 0 labelled test samples; balanced_accuracy n/a" in kind
    assert "|" not in kind  # no distribution or confusion table
    assert "regression, 0 labelled test samples; r2 n/a" in _section(md, "depth")
    assert "- **kind** has no labelled test samples: nothing measured." in md
    rows = _table_after(md, "| task | kind | metric |")
    assert rows[1][:5] == ["kind", "classification", "balanced_accuracy", "n/a", "n/a"]


def test_markdown_with_a_discrete_task_without_training_labels() -> None:
    case = _case(train={"kind": np.full(N_TRAIN, NAN)})
    section = _section(case.markdown(), "kind")
    rows = _table_after(section, "| class | 0 | 1 | 2 |")
    assert rows[0] == ["labels, train", "0 (0%)", "0 (0%)", "0 (0%)"]


@pytest.mark.filterwarnings("ignore:.*:RuntimeWarning")  # mean of the empty training labels
def test_markdown_with_a_regression_task_without_training_labels() -> None:
    case = _case(train={"depth": np.full(N_TRAIN, NAN)})
    section = _section(case.markdown(), "depth")
    assert "| labels, train | n/a | n/a | n/a | n/a | n/a |" in section
    rows = {row[0]: row[1:] for row in _table_after(section, "| mean | std | p5 |")}
    assert rows["labels, test"][0] == "4.5"
