"""kinds: properties every registered task kind shares, and a kind registered at run time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from mtl_models._registry import UnknownNameError
from mtl_models.augment.effects import EFFECTS, task_sensitivity
from mtl_models.kinds import KINDS, Decoded, Regression, get_kind
from mtl_models.losses import ClassWeighting
from mtl_models.metrics import task_metrics
from mtl_models.nn.heads import build_head
from mtl_models.tasks import TaskSpec, fit_task

NAN = float("nan")
REPO = Path(__file__).resolve().parents[3]
SHIPPED = ["binary", "classification", "ordinal", "regression"]


def sample_task(kind: str, name: str = "t") -> TaskSpec:
    """A task of ``kind``: without n_classes where the kind allows it, else 4 classes."""
    try:
        n_classes = get_kind(kind).check(kind, None)
    except ValueError:
        n_classes = 4
    return TaskSpec(name, kind, n_classes=n_classes)


def sample_labels(task: TaskSpec, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if task.is_discrete:
        assert task.n_classes is not None
        return (np.arange(n) % task.n_classes).astype(float)[rng.permutation(n)]
    return np.round(rng.normal(10.0, 3.0, n).clip(0), 0)  # non-negative integers suit every kind


def with_missing(labels: np.ndarray) -> np.ndarray:
    labels = labels.copy()
    labels[::5] = NAN
    return labels


def test_the_shipped_kinds_are_registered() -> None:
    assert set(SHIPPED) <= set(KINDS.names())
    with pytest.raises(UnknownNameError, match="available: " + ", ".join(KINDS.names())):
        get_kind("nominal")


@pytest.mark.parametrize("kind", KINDS.names())
def test_head_outputs_the_kinds_width(kind: str) -> None:
    task = sample_task(kind)
    head = build_head(task, in_features=8, hidden=16, dropout=0.0)
    assert head(torch.randn(5, 8)).shape == (5, get_kind(kind).n_outputs(task))


@pytest.mark.parametrize("kind", KINDS.names())
def test_loss_is_finite_and_falls_under_one_optimiser_step(kind: str) -> None:
    torch.manual_seed(0)
    labels = sample_labels(sample_task(kind), 32)
    task = fit_task(sample_task(kind), labels, "balanced")
    head = build_head(task, in_features=8, hidden=16, dropout=0.0)
    x, target = torch.randn(32, 8), torch.tensor(labels, dtype=torch.float32)
    optimiser = torch.optim.SGD(head.parameters(), lr=0.05)
    before = head.loss(head(x), target)
    assert before.ndim == 0 and bool(torch.isfinite(before))
    before.backward()
    optimiser.step()
    with torch.no_grad():
        after = head.loss(head(x), target)
    assert float(after) < float(before.detach())


@pytest.mark.parametrize("kind", KINDS.names())
def test_a_masked_sample_does_not_count(kind: str) -> None:
    task = sample_task(kind)
    head = build_head(task, in_features=8, hidden=0, dropout=0.0)
    out = head(torch.randn(4, 8))
    target = torch.tensor(sample_labels(task, 4), dtype=torch.float32)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(head.loss(out, target, mask), head.loss(out[:3], target[:3]))


@pytest.mark.parametrize("kind", KINDS.names())
def test_decode_gives_one_prediction_per_sample_and_probabilities_summing_to_one(
    kind: str,
) -> None:
    task = sample_task(kind)
    head = build_head(task, in_features=8, hidden=16, dropout=0.0)
    decoded = head.decode(head(torch.randn(6, 8)))
    assert isinstance(decoded, Decoded)
    assert decoded.prediction.shape == (6,)
    if decoded.proba is not None:
        assert task.n_classes is not None
        assert decoded.proba.shape == (6, task.n_classes)
        assert bool((decoded.proba >= 0).all())
        torch.testing.assert_close(decoded.proba.sum(dim=1), torch.ones(6))
        torch.testing.assert_close(decoded.prediction, decoded.proba.argmax(dim=1))
    else:
        assert not task.is_discrete


@pytest.mark.parametrize("kind", KINDS.names())
def test_strata_cover_every_labelled_row_once(kind: str) -> None:
    task = sample_task(kind)
    labels = with_missing(sample_labels(task, 40))
    strata = task.strata(labels)
    assert strata.dtype == np.int8 and strata.shape[0] == 40 and strata.shape[1] >= 2
    np.testing.assert_array_equal(strata.sum(axis=1), (~np.isnan(labels)).astype(int))
    assert (strata.sum(axis=0) > 0).sum() >= 2  # spread labels fall in more than one stratum


@pytest.mark.parametrize("kind", KINDS.names())
def test_n_classes_of_one_is_rejected_naming_the_task(kind: str) -> None:
    with pytest.raises(ValueError, match="classes") as info:
        TaskSpec("pits_left", kind, n_classes=1)
    assert str(info.value).startswith("task 'pits_left': ")


@pytest.mark.parametrize("kind", KINDS.names())
def test_perfect_predictions_score_one_and_a_constant_collapses(kind: str) -> None:
    task = sample_task(kind)
    labels = with_missing(sample_labels(task, 40))
    perfect = task_metrics(task, labels, np.nan_to_num(labels))
    assert perfect["kind"] == kind and perfect["n"] == 32
    assert perfect["score"] == pytest.approx(1.0)
    assert perfect["score"] == perfect[task.primary_metric]
    assert perfect["collapsed"] is False
    constant = task_metrics(task, labels, np.full(40, 1.0))
    assert constant["collapsed"] is True
    assert constant["score"] < perfect["score"]


@pytest.mark.parametrize("kind", KINDS.names())
def test_labels_and_settings_each_kind_checks(kind: str) -> None:
    task = sample_task(kind)
    labels = np.r_[sample_labels(task, 3), NAN, np.inf]
    np.testing.assert_array_equal(task.invalid_label_rows(labels), [4])
    assert "empty" in task.expected_labels()
    assert set(task_sensitivity(kind)) <= set(EFFECTS)
    assert TaskSpec.from_dict(task.to_dict()) == task


@pytest.mark.parametrize("kind", KINDS.names())
def test_fit_learns_only_from_labelled_training_rows(kind: str) -> None:
    task = sample_task(kind)
    labels = sample_labels(task, 30)
    fitted = fit_task(task, with_missing(labels), "balanced")
    assert fitted.kind == task.kind and fitted.n_classes == task.n_classes
    assert fit_task(task, with_missing(labels), "balanced") == fitted  # deterministic
    if get_kind(kind).weighs_classes:
        assert fitted.class_weights is not None and len(fitted.class_weights) == task.n_classes
    else:
        assert fitted.class_weights is None


def test_regression_fit_and_strata_by_hand() -> None:
    task = TaskSpec("depth", "regression")
    fitted = fit_task(task, np.array([1.0, NAN, 3.0, 5.0]))
    assert (fitted.target_mean, fitted.target_std) == (3.0, pytest.approx(np.std([1, 3, 5])))
    assert fit_task(task, np.array([2.0, NAN])).target_std == 1.0  # one label: no spread
    strata = task.strata(np.arange(10.0))  # quantile bins of two values each
    np.testing.assert_array_equal(strata.argmax(axis=1), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])


def test_discrete_strata_are_the_classes() -> None:
    task = TaskSpec("grade", "ordinal", n_classes=3)
    strata = task.strata(np.array([2.0, NAN, 0.0]))
    np.testing.assert_array_equal(strata, [[0, 0, 1], [0, 0, 0], [1, 0, 0]])


def test_fit_weighs_classes_like_the_losses_module() -> None:
    task = TaskSpec("kind", "classification", n_classes=3)
    fitted = fit_task(task, np.array([0.0, 0.0, 0.0, 1.0, NAN]), "balanced")
    # n / (present classes * count): 4 / (2 * 3), 4 / (2 * 1); the absent class weighs 0
    assert fitted.class_weights == pytest.approx((4 / 6, 2.0, 0.0))
    assert fit_task(task, np.array([0.0, 1.0]), "none").class_weights is None


# ---------------------------------------------------------------- a kind registered at run time


class Count(Regression):
    """Non-negative integer counts: a log-rate output and a Poisson loss."""

    sensitivity: ClassVar[dict[str, float]] = {"crop": 0, "erase": 0}

    def loss(
        self,
        task: TaskSpec,
        outputs: Tensor,
        target: Tensor,
        class_weights: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        terms = F.poisson_nll_loss(outputs.squeeze(1), target, log_input=True, reduction="none")
        keep = torch.ones_like(terms) if mask is None else mask
        return (terms * keep).sum() / keep.sum().clamp(min=1.0)

    def decode(self, task: TaskSpec, outputs: Tensor) -> Decoded:
        return Decoded(torch.exp(outputs.squeeze(1)), None)

    def fit(self, task: TaskSpec, values: np.ndarray, class_weighting: ClassWeighting) -> TaskSpec:
        return task

    def invalid_label_rows(self, task: TaskSpec, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=float)
        with np.errstate(invalid="ignore"):
            bad = ~np.isnan(labels) & ((labels < 0) | (labels != np.round(labels)))
        return np.flatnonzero(bad)

    def expected_labels(self, task: TaskSpec) -> str:
        return "a count 0, 1, 2, ... or empty"


@pytest.fixture
def count_kind() -> Iterator[str]:
    KINDS.register("count")(Count)
    yield "count"
    KINDS.unregister("count")


def test_a_kind_registered_at_run_time_trains_scores_and_validates(count_kind: str) -> None:
    task = TaskSpec("visits", count_kind)
    assert task.n_classes is None and not task.is_discrete and task.primary_metric == "r2"
    np.testing.assert_array_equal(task.invalid_label_rows([0, 3, 2.5, -1, NAN]), [2, 3])
    assert task_sensitivity(count_kind, {"hflip": 0}) == {"crop": 0.0, "erase": 0.0, "hflip": 0.0}

    torch.manual_seed(0)
    head = build_head(task, in_features=4, hidden=8, dropout=0.0)
    x = torch.randn(16, 4)
    target = torch.poisson(torch.exp(x[:, 0]))
    loss = head.loss(head(x), target)
    assert bool(torch.isfinite(loss))
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())
    decoded = head.decode(head(x))
    assert decoded.proba is None and bool((decoded.prediction > 0).all())

    metrics = task_metrics(task, target.numpy(), target.numpy())
    assert metrics["kind"] == "count" and metrics["score"] == pytest.approx(1.0)


def test_a_kind_registered_at_run_time_is_accepted_by_the_tasks_config(count_kind: str) -> None:
    from pipelines.config import parse_params
    from pipelines.config.tasks import TaskConfig

    config = TaskConfig.model_validate({"kind": count_kind, "sensitive_to": ["hflip"]})
    assert config.sensitivity() == {"crop": 0.0, "erase": 0.0, "hflip": 0.0}
    assert config.class_weighting_or("balanced") == "none"  # the kind weighs no classes
    with pytest.raises(ValueError, match="a count task has no n_classes"):
        TaskConfig.model_validate({"kind": count_kind, "n_classes": 3})
    with pytest.raises(ValueError, match="a count task takes no class_weighting"):
        TaskConfig.model_validate({"kind": count_kind, "class_weighting": "balanced"})

    raw: dict[str, Any] = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tasks"]["pits_left"] = {"kind": count_kind}
    params = parse_params(raw)
    spec = next(t for t in params.task_specs() if t.name == "pits_left")
    assert spec.kind == count_kind and params.class_weighting("pits_left") == "none"


def test_an_unknown_kind_in_the_tasks_config_lists_the_registered_ones() -> None:
    from pipelines.config.tasks import TaskConfig

    with pytest.raises(ValueError, match="unknown task kind 'count'; available: binary") as info:
        TaskConfig.model_validate({"kind": "count"})
    assert "kind" in str(info.value)


def test_unregister_removes_a_kind_and_rejects_an_absent_one() -> None:
    KINDS.register("count")(Count)
    KINDS.unregister("count")
    assert "count" not in KINDS
    with pytest.raises(UnknownNameError, match="unknown task kind 'count'"):
        KINDS.unregister("count")
    with pytest.raises(UnknownNameError):
        TaskSpec("visits", "count")
