"""Feature-level aggregation (``level: features``): the maths against a direct computation,
the parameter path's single Gramian against torchjd's own, and training in that mode."""

from __future__ import annotations

import pytest
import torch
from torchjd.aggregation import GramianWeightedAggregator
from torchjd.autojac import jac_to_grad, mtl_backward

from mtl_models.nn.architectures import ARCHITECTURES
from mtl_models.nn.model import ModelSpec, build_model
from mtl_models.weighting import WEIGHTINGS, build_weighting
from tests.mtl_models.weighting.test_weighting import MIXED, MIXED_LABELS, MIXED_NAMES, train_toy

FEATURE_LEVEL = [
    name
    for name in WEIGHTINGS.names()
    if "level" in WEIGHTINGS.get(name).__init__.__code__.co_varnames  # type: ignore[misc]
]


def _model(architecture: str = "hps", shared_depth: int = 1):
    torch.manual_seed(0)
    spec = ModelSpec(
        tasks=MIXED,
        backbone_args={"width": 4, "depth": 2},
        shared_depth=shared_depth,
        architecture=architecture,
        head_hidden=8,
        image_size=16,
    )
    return build_model(spec).double()


def _batch():
    torch.manual_seed(1)
    return torch.rand(len(MIXED_LABELS), 1, 16, 16, dtype=torch.float64)


def test_the_supported_aggregators_are_exactly_the_gramian_ones() -> None:
    assert set(FEATURE_LEVEL) == {
        *("upgrad", "pcgrad", "cagrad", "mgda", "aligned_mtl"),
        *("gradvac", "imtl_g", "dualproj", "fairgrad"),
    }
    for name in FEATURE_LEVEL:
        method = build_weighting(name, MIXED_NAMES)
        assert isinstance(method.aggregator, GramianWeightedAggregator)


@pytest.mark.parametrize("name", ["nash_mtl", "config"])
def test_an_aggregator_without_a_gramian_weighting_has_no_feature_level(name: str) -> None:
    with pytest.raises(TypeError, match="level"):
        build_weighting(name, MIXED_NAMES, level="features")


@pytest.mark.parametrize("architecture", ["hps", "mmoe", "cross_stitch"])
@pytest.mark.parametrize("name", ["upgrad", "mgda", "pcgrad"])
def test_feature_level_gradients_equal_a_direct_computation(name: str, architecture: str) -> None:
    """Weights from the Gramian of the tasks' gradients w.r.t. the features, computed here
    by hand from detached copies of the features; the shared parameters then get the
    gradient of sum_t w_t loss_t, the task parameters that of sum_t loss_t."""
    model, x = _model(architecture), _batch()
    # the direct computation: features as leaves, one backward per task
    outputs, features = model.forward_with_features(x)
    feats = [features] if isinstance(features, torch.Tensor) else list(features)
    rows = [
        torch.cat(
            [
                torch.zeros_like(f).flatten() if g is None else g.flatten()
                for g, f in zip(
                    torch.autograd.grad(loss, feats, retain_graph=True, allow_unused=True),
                    feats,
                    strict=True,
                )
            ]
        )
        for loss in model.task_loss_terms(outputs, MIXED_LABELS)
    ]
    jacobian = torch.stack(rows)
    gramian = jacobian @ jacobian.T
    method = build_weighting(name, MIXED_NAMES, level="features").double()
    torch.manual_seed(7)  # PCGrad draws a task order
    weights = method.aggregator.gramian_weighting(gramian)

    shared = model.shared_parameters()
    losses = model.task_loss_terms(*[model.forward_with_features(x)[0]], MIXED_LABELS)
    expected_shared = torch.autograd.grad(
        (weights.detach() * torch.stack(losses)).sum(), shared, retain_graph=True
    )
    task_params = [p for p in model.parameters() if all(p is not s for s in shared)]
    expected_task = torch.autograd.grad(torch.stack(losses).sum(), task_params, allow_unused=True)

    model.zero_grad()
    outputs, features = model.forward_with_features(x)
    torch.manual_seed(7)
    step = method.backward(model.task_loss_terms(outputs, MIXED_LABELS), features, shared)

    torch.testing.assert_close(step.weights, weights.detach(), rtol=1e-9, atol=1e-12)
    norms = gramian.diagonal().sqrt()
    torch.testing.assert_close(step.gradient_cosine, gramian / torch.outer(norms, norms))
    # float64; weights equal to 1e-9 can move a sum of large opposed task gradients by ~1e-9
    for p, g in zip(shared, expected_shared, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-8)
    for p, g in zip(task_params, expected_task, strict=True):
        if g is not None:
            torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["upgrad", "mgda", "cagrad", "gradvac"])
def test_the_parameter_path_forms_one_gramian_and_matches_torchjd(name: str) -> None:
    """Weights and gradients of the exact path equal torchjd's ``jac_to_grad``, though the
    Gramian is formed once and shared with the logged cosine."""
    model, x = _model(), _batch()
    shared = model.shared_parameters()
    ours = build_weighting(name, MIXED_NAMES).double()
    outputs, features = model.forward_with_features(x)
    step = ours.backward(model.task_loss_terms(outputs, MIXED_LABELS), features, shared)
    got = [p.grad.clone() for p in shared]

    model.zero_grad()
    reference = build_weighting(name, MIXED_NAMES).double()
    outputs, features = model.forward_with_features(x)
    mtl_backward(model.task_loss_terms(outputs, MIXED_LABELS), features=features)
    weights = jac_to_grad(shared, reference.aggregator)
    torch.testing.assert_close(step.weights, weights, rtol=1e-9, atol=1e-12)
    for p, g in zip(shared, got, strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", FEATURE_LEVEL)
def test_every_supported_aggregator_trains_the_toy_at_feature_level(name: str) -> None:
    torch.manual_seed(0)
    history = train_toy(name, level="features")
    assert history[-1].weights and history[-1].gradient_cosine is not None


def test_every_architecture_has_a_feature_level_step() -> None:
    """The features of every architecture are a cut the feature-level path can weigh."""
    for architecture in ARCHITECTURES.names():
        model, x = _model(architecture), _batch()
        outputs, features = model.forward_with_features(x)
        method = build_weighting("upgrad", MIXED_NAMES, level="features").double()
        step = method.backward(
            model.task_loss_terms(outputs, MIXED_LABELS), features, model.shared_parameters()
        )
        assert torch.isfinite(step.loss), architecture
        assert all(p.grad is not None for p in model.shared_parameters()), architecture
