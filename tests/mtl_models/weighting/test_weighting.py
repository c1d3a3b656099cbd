"""weighting: the registry, then properties every method shares, served as the trainer serves them.

Each method runs one step on a small real ``MultiTaskModel`` (ordinal, classification and
regression tasks), and trains a tiny two-task problem with ``Trainer``. Method-specific numbers
(conflicting gradients, FAMO, DWA, UW, static weights) are in ``test_weighting_methods.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor

from mtl_models._registry import UnknownNameError
from mtl_models.nn.model import ModelSpec, MultiTaskModel, build_model
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import MultiTaskImageDataset, make_loader
from mtl_models.train.trainer import EpochLog, Trainer
from mtl_models.weighting import (
    WEIGHTINGS,
    StepResult,
    WeightingMethod,
    build_weighting,
    check_weighting,
)
from tests.toy_data import bright_left_images

SCALARISERS = ["equal", "static", "uw", "imtl_l", "dwa", "famo", "stch", "rlw", "gls"]
AGGREGATORS = [
    "upgrad", "pcgrad", "cagrad", "mgda", "nash_mtl", "aligned_mtl",
    "gradvac", "imtl_g", "dualproj", "fairgrad", "config",
]  # fmt: skip
METHODS = WEIGHTINGS.names()

MIXED = (
    TaskSpec("ord", "ordinal", n_classes=4),
    TaskSpec("cls", "classification", n_classes=3),
    TaskSpec("reg", "regression"),
)
MIXED_NAMES = [t.name for t in MIXED]
MIXED_LABELS = torch.tensor(
    [[0, 0, 0.5], [1, 1, -1.0], [2, 2, 2.0], [3, 0, 0.0], [1, 2, 1.0], [0, 1, -0.3]]
)
# FAMO learns its logits from how the losses changed across a step, with its own Adam inside
# ``after_step``, never through ``backward``: the one weighting parameter left without a gradient.
NOT_LEARNED_BY_BACKWARD = {"famo": {"scalarizer._w"}}


def mixed_model(shared_depth: int = 1) -> MultiTaskModel:
    spec = ModelSpec(
        tasks=MIXED,
        backbone_args={"width": 4, "depth": 2},
        shared_depth=shared_depth,
        head_hidden=8,
        image_size=16,
    )
    return build_model(spec)


def flat(grads: tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    return torch.cat([g.flatten() for g in grads])


# --- registry ------------------------------------------------------------------------------------


def test_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(UnknownNameError, match="'uncertainty'") as info:
        build_weighting("uncertainty", MIXED_NAMES)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "available: " + ", ".join(sorted(METHODS)) in message
    assert all(name in message for name in SCALARISERS + AGGREGATORS)


def test_registry_holds_every_documented_method() -> None:
    assert len(SCALARISERS + AGGREGATORS) == 20
    assert set(SCALARISERS + AGGREGATORS) <= set(METHODS)


@pytest.mark.parametrize("method", SCALARISERS + AGGREGATORS)
def test_each_method_declares_what_the_trainer_must_serve(method: str) -> None:
    weighting = build_weighting(method, MIXED_NAMES)
    assert isinstance(weighting, WeightingMethod)
    assert weighting.task_names == MIXED_NAMES
    assert weighting.needs_task_gradients == (method in AGGREGATORS)
    assert weighting.needs_losses_after_step == (method == "famo")


# --- one step on a real model, served as Trainer.train_epoch serves it --------------------------


@dataclass
class Step:
    model: MultiTaskModel
    weighting: WeightingMethod
    result: StepResult
    task_jacobian: Tensor  # [T, P]: each task's own gradient of the shared parameters
    own_grads: list[Tensor]  # each task's gradient of its own branch and head
    shared_grad: Tensor  # what the weighting put in the shared parameters' .grad
    applied_own_grads: list[Tensor]  # what it put in each task's branch and head .grad


def applied_grad(params: list[torch.nn.Parameter]) -> Tensor:
    """The parameters' ``.grad``, flat; NaN where one is missing (its own test names it)."""
    return flat([torch.full_like(p, float("nan")) if p.grad is None else p.grad for p in params])


def own_parameters(model: MultiTaskModel, name: str) -> list[torch.nn.Parameter]:
    assert model.branches is not None
    return [*model.branches[name].parameters(), *model.heads[name].parameters()]


def one_step(method: str) -> Step:
    model = mixed_model()
    trainer = Trainer(model, build_weighting(method, MIXED_NAMES), epochs=1, lr=1e-2)
    weighting = trainer.weighting
    shared = model.shared_parameters() if weighting.needs_task_gradients else []
    images = torch.rand(len(MIXED_LABELS), 1, 16, 16)
    model.train()
    outputs, features = model.forward_with_features(images)
    losses = model.task_loss_terms(outputs, MIXED_LABELS)
    # Reference gradients, taken from the same graph before the weighting consumes it.
    shared_all = model.shared_parameters()
    jacobian = torch.stack(
        [flat(torch.autograd.grad(loss, shared_all, retain_graph=True)) for loss in losses]
    )
    own = [
        flat(torch.autograd.grad(loss, own_parameters(model, name), retain_graph=True))
        for loss, name in zip(losses, MIXED_NAMES, strict=True)
    ]
    trainer.optimizer.zero_grad(set_to_none=True)
    result = weighting.backward(losses, features, shared)
    shared_grad = applied_grad(shared_all)
    applied_own = [applied_grad(own_parameters(model, n)) for n in MIXED_NAMES]
    trainer.optimizer.step()
    if weighting.needs_losses_after_step:
        with torch.no_grad():
            weighting.after_step(model.task_losses(model(images), MIXED_LABELS))
    return Step(model, weighting, result, jacobian, own, shared_grad, applied_own)


@pytest.mark.parametrize("method", METHODS)
def test_step_result_is_a_finite_loss_and_one_weight_per_task(method: str) -> None:
    result = one_step(method).result
    assert isinstance(result, StepResult)
    assert result.loss.shape == ()
    assert bool(torch.isfinite(result.loss))
    assert not result.loss.requires_grad
    if method == "config":  # ConFIG's update is not a weighted sum of the task gradients
        assert result.weights is None
    else:
        assert result.weights is not None
        assert result.weights.shape == (len(MIXED),)
        assert bool(torch.isfinite(result.weights).all())
        assert not result.weights.requires_grad


@pytest.mark.parametrize("method", METHODS)
def test_every_trainable_parameter_gets_a_finite_gradient(method: str) -> None:
    step = one_step(method)
    for name, p in step.model.named_parameters():
        assert p.requires_grad, name
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()), name
    exempt = NOT_LEARNED_BY_BACKWARD.get(method, set())
    for name, p in step.weighting.named_parameters():
        if name in exempt:
            assert p.grad is None, name  # so the trainer's optimiser never steps it
            continue
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()), name


@pytest.mark.parametrize("method", METHODS)
def test_reported_weights_are_the_ones_applied_to_the_gradients(method: str) -> None:
    step = one_step(method)
    weights = step.result.weights
    if weights is None:
        # ConFIG: an update with the same positive cosine to every task gradient.
        cosines = torch.nn.functional.cosine_similarity(
            step.task_jacobian, step.shared_grad[None], dim=1
        )
        assert bool((cosines > 0).all())
        torch.testing.assert_close(cosines, cosines.mean().expand(len(MIXED)))
        return
    scale = float(step.shared_grad.abs().max())
    torch.testing.assert_close(
        step.shared_grad, weights @ step.task_jacobian, rtol=1e-4, atol=1e-5 * scale
    )
    for t, name in enumerate(MIXED_NAMES):
        # Aggregators weigh only the shared parameters; a task's own parameters take its own
        # gradient. Scalarisers weigh everything downstream of the loss.
        factor = 1.0 if step.weighting.needs_task_gradients else float(weights[t])
        torch.testing.assert_close(
            step.applied_own_grads[t],
            factor * step.own_grads[t],
            rtol=1e-4,
            atol=1e-7,
            msg=lambda m, name=name: f"{name}: {m}",
        )


@pytest.mark.parametrize("method", METHODS)
def test_gradient_cosine_is_reported_by_methods_that_compute_task_gradients(method: str) -> None:
    step = one_step(method)
    cosine = step.result.gradient_cosine
    if not step.weighting.needs_task_gradients:
        assert cosine is None
        return
    assert cosine is not None
    n = len(MIXED)
    assert cosine.shape == (n, n)
    assert not cosine.requires_grad
    torch.testing.assert_close(cosine, cosine.T)
    torch.testing.assert_close(cosine.diagonal(), torch.ones(n))
    assert bool((cosine.abs() <= 1 + 1e-6).all())
    expected = torch.nn.functional.cosine_similarity(
        step.task_jacobian[:, None], step.task_jacobian[None], dim=-1
    )
    torch.testing.assert_close(cosine, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_a_task_without_labels_in_the_batch_keeps_the_model_finite(method: str) -> None:
    model = mixed_model()
    trainer = Trainer(model, build_weighting(method, MIXED_NAMES), epochs=1, lr=1e-2)
    labels = MIXED_LABELS.clone()
    labels[:, 0] = float("nan")  # 'ord' unlabelled: its loss is a graph-connected zero
    stats = trainer.train_epoch([(torch.rand(len(labels), 1, 16, 16), labels)])
    assert float(stats.task_losses[0]) == 0.0
    if stats.weights is not None:
        assert bool(torch.isfinite(stats.weights).all()), stats.weights
    for name, p in model.named_parameters():
        assert bool(torch.isfinite(p).all()), name


# --- what the trainer refuses -------------------------------------------------------------------


@pytest.mark.parametrize("method", AGGREGATORS)
def test_check_weighting_refuses_an_aggregator_without_shared_blocks(method: str) -> None:
    """The one rule the trainer and the configuration both ask (check_weighting)."""
    cls = WEIGHTINGS.get(method)
    check_weighting(cls, method, shares_blocks=True, joint_batches=True)
    with pytest.raises(ValueError, match=r"shares none \(shared_depth=0\).*shared_depth >= 1"):
        check_weighting(cls, method, shares_blocks=False)
    with pytest.raises(ValueError, match="trains one task per batch"):
        check_weighting(cls, method, joint_batches=False)


@pytest.mark.parametrize("method", AGGREGATORS)
def test_trainer_refuses_a_gradient_method_on_a_model_sharing_nothing(method: str) -> None:
    with pytest.raises(ValueError, match=r"shares none \(shared_depth=0\)"):
        Trainer(mixed_model(shared_depth=0), build_weighting(method, MIXED_NAMES), epochs=1)


def test_trainer_accepts_a_loss_scalariser_on_a_model_sharing_nothing() -> None:
    model = mixed_model(shared_depth=0)
    trainer = Trainer(model, build_weighting("equal", MIXED_NAMES), epochs=1)
    stats = trainer.train_epoch([(torch.rand(len(MIXED_LABELS), 1, 16, 16), MIXED_LABELS)])
    assert bool(torch.isfinite(stats.task_losses).all())


# --- training: every method lowers the task losses on a tiny two-task problem -------------------

BRIGHT_LEFT = (TaskSpec("bright", "binary"), TaskSpec("left", "binary"))
EPOCHS = 3


def train_toy(method: str, **hyperparameters: object) -> list[EpochLog]:
    """EPOCHS epochs of ``method`` on the bright/left toy; every task's loss must fall."""
    train = make_loader(MultiTaskImageDataset(*bright_left_images(128, 1)), 16, shuffle=True)
    val = make_loader(MultiTaskImageDataset(*bright_left_images(16, 2)), 16, shuffle=False)
    spec = ModelSpec(
        tasks=BRIGHT_LEFT,
        backbone_args={"width": 4, "depth": 2, "pool_size": 2},
        shared_depth=1,
        head_hidden=8,
        image_size=8,
    )
    names = [t.name for t in BRIGHT_LEFT]
    weighting = build_weighting(method, names, **hyperparameters)
    history = Trainer(build_model(spec), weighting, epochs=EPOCHS, lr=2e-2).fit(train, val).history
    first, last = history[0].task_losses, history[-1].task_losses
    # Unweighted losses: a method that only shrank its own weights would not pass.
    assert np.mean(list(last.values())) < 0.5 * np.mean(list(first.values())), (first, last)
    for name in names:
        assert last[name] < first[name], (name, first, last)
    return history


@pytest.mark.parametrize("method", METHODS)
def test_training_lowers_the_task_losses(method: str) -> None:
    assert len(train_toy(method)) == EPOCHS


# --- repr ----------------------------------------------------------------------------------------


def test_repr_echoes_hyperparameters() -> None:
    cagrad = build_weighting("cagrad", MIXED_NAMES, c=0.3)
    assert "c=0.3" in cagrad.extra_repr()  # the weighting's own line, not only its aggregator's
    assert "c=0.3" in repr(cagrad)
    dwa = build_weighting("dwa", MIXED_NAMES, temperature=4.0)
    assert "temperature=4.0" in dwa.extra_repr()
    assert "temperature=" in repr(dwa)
    static = build_weighting("static", MIXED_NAMES, weights={"cls": 3.0})
    assert "weights={'cls': 3.0}" in repr(static)
