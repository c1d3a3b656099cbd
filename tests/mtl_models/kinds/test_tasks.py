"""tasks: TaskSpec validation, label checks and (de)serialisation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from mtl_models.kinds import KINDS
from mtl_models.tasks import TaskSpec

NAN = float("nan")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "binary", "n_classes": 3}, "binary task has 2 classes"),
        ({"kind": "classification"}, "classification task needs n_classes >= 2"),
        ({"kind": "classification", "n_classes": 1}, "classification task needs n_classes >= 2"),
        ({"kind": "ordinal", "n_classes": None}, "ordinal task needs n_classes >= 2"),
        ({"kind": "regression", "n_classes": 2}, "regression task has no n_classes"),
        ({"kind": "regression", "target_std": 0.0}, "target_std must be positive"),
        ({"kind": "regression", "target_std": -1.0}, "target_std must be positive"),
    ],
    ids=["binary-3", "cls-none", "cls-1", "ord-none", "reg-classes", "std-0", "std-neg"],
)
def test_invalid_specs_raise_naming_the_task(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        TaskSpec("pits_left", **kwargs)
    assert "task 'pits_left'" in str(info.value)


def test_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="'nominal'"):
        TaskSpec("x", "nominal")  # type: ignore[arg-type]


def test_defaults_and_coercion() -> None:
    binary = TaskSpec("defective", "binary")  # type: ignore[arg-type]
    assert binary.kind == "binary"
    assert binary.n_classes == 2
    assert binary.column == "defective"
    assert TaskSpec("a", "binary", n_classes=2).n_classes == 2
    assert TaskSpec("a", "regression", column="depth_um").column == "depth_um"


@pytest.mark.parametrize(
    ("spec", "discrete", "metric"),
    [
        (TaskSpec("c", "classification", n_classes=3), True, "balanced_accuracy"),
        (TaskSpec("b", "binary"), True, "balanced_accuracy"),
        (TaskSpec("o", "ordinal", n_classes=6), True, "qwk"),
        (TaskSpec("r", "regression"), False, "r2"),
    ],
    ids=lambda v: v.kind if isinstance(v, TaskSpec) else None,
)
def test_kind_properties(spec: TaskSpec, discrete: bool, metric: str) -> None:
    assert spec.is_discrete is discrete
    assert spec.primary_metric == metric == KINDS.get(spec.kind).primary_metric


def test_invalid_label_rows_for_discrete_tasks() -> None:
    task = TaskSpec("rating", "ordinal", n_classes=6)
    labels = np.array([0, 5, NAN, 6, -1, 2.5, 3.0, np.inf, -0.0])
    # 6 is out of range, -1 negative, 2.5 not an integer, inf not an integer; NaN is missing
    np.testing.assert_array_equal(task.invalid_label_rows(labels), [3, 4, 5, 7])
    assert task.invalid_label_rows([0, 1, NAN]).size == 0
    binary = TaskSpec("defective", "binary")
    np.testing.assert_array_equal(binary.invalid_label_rows([0, 1, 2, NAN]), [2])


def test_invalid_label_rows_for_regression() -> None:
    task = TaskSpec("depth", "regression")
    labels = [1.5, -3.0, np.inf, NAN, -np.inf, 1e9]
    np.testing.assert_array_equal(task.invalid_label_rows(labels), [2, 4])


def test_expected_labels_text() -> None:
    assert TaskSpec("o", "ordinal", n_classes=6).expected_labels() == "an integer 0..5 or empty"
    assert TaskSpec("r", "regression").expected_labels() == "a finite number or empty"


@pytest.mark.parametrize(
    "spec",
    [
        TaskSpec("c", "classification", n_classes=3, column="kind"),
        TaskSpec("b", "binary"),
        TaskSpec("o", "ordinal", n_classes=6),
        TaskSpec("r", "regression", target_mean=12.5, target_std=3.25),
    ],
    ids=lambda s: s.kind,
)
def test_dict_round_trip(spec: TaskSpec) -> None:
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["kind"] == spec.kind
    restored = TaskSpec.from_dict(data)
    assert restored == spec
    assert restored.kind == spec.kind
