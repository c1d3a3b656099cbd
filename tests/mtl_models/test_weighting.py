"""weighting: shared properties over every registered method, then each method's own numbers."""

from __future__ import annotations

import pytest
import torch

from mtl_models._registry import UnknownNameError
from mtl_models.weighting import WEIGHTINGS, Weighting, build_weighting

TASKS = ["scratches", "pits", "corrosion"]
LOSSES = torch.tensor([0.7, 1.9, 0.2])


def test_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(UnknownNameError, match="'uncertainty'") as info:
        build_weighting("uncertainty", TASKS)
    assert isinstance(info.value, ValueError)
    assert "available: equal, static" in str(info.value)


def test_registry_holds_the_documented_methods() -> None:
    assert {"equal", "static"} <= set(WEIGHTINGS.names())


@pytest.mark.parametrize("method", WEIGHTINGS.names())
def test_combine_is_a_finite_scalar_connected_to_the_losses(method: str) -> None:
    weighting = build_weighting(method, TASKS)
    assert isinstance(weighting, Weighting)
    losses = LOSSES.clone().requires_grad_(True)
    combined = weighting.combine(losses)
    assert combined.ndim == 0
    assert bool(torch.isfinite(combined))
    combined.backward()
    assert losses.grad is not None and bool(torch.isfinite(losses.grad).all())


@pytest.mark.parametrize("method", WEIGHTINGS.names())
def test_effective_weights_shape_finite_and_detached(method: str) -> None:
    weighting = build_weighting(method, TASKS)
    losses = LOSSES.clone().requires_grad_(True)
    with torch.no_grad():  # the trainer may ask outside a graph
        weights = weighting.effective_weights(losses)
    assert weights.shape == (len(TASKS),)
    assert bool(torch.isfinite(weights).all())
    assert not weights.requires_grad
    assert losses.grad is None  # probing does not touch the caller's tensor


@pytest.mark.parametrize("method", WEIGHTINGS.names())
def test_weighting_follows_module_to_device(method: str) -> None:
    # 'meta' stands in for a GPU: every tensor the weighting uses must move with .to()
    weighting = build_weighting(method, TASKS).to("meta")
    assert weighting.combine(torch.ones(len(TASKS), device="meta")).device.type == "meta"


def test_equal_weights_are_all_one() -> None:
    weighting = build_weighting("equal", TASKS)
    torch.testing.assert_close(weighting.effective_weights(LOSSES), torch.ones(3))
    torch.testing.assert_close(weighting.combine(LOSSES), torch.tensor(0.7 + 1.9 + 0.2))


def test_static_weights_default_to_one_for_unnamed_tasks() -> None:
    weighting = build_weighting("static", TASKS, weights={"scratches": 2.0, "corrosion": 0.5})
    torch.testing.assert_close(weighting.effective_weights(LOSSES), torch.tensor([2.0, 1.0, 0.5]))
    torch.testing.assert_close(
        weighting.combine(LOSSES), torch.tensor(2.0 * 0.7 + 1.0 * 1.9 + 0.5 * 0.2)
    )


def test_static_without_weights_is_equal() -> None:
    weighting = build_weighting("static", TASKS)
    torch.testing.assert_close(weighting.effective_weights(LOSSES), torch.ones(3))


def test_static_rejects_unknown_task() -> None:
    with pytest.raises(ValueError, match=r"unknown tasks \['rust'\]"):
        build_weighting("static", TASKS, weights={"pits": 1.0, "rust": 2.0})


def test_static_rejects_negative_weight() -> None:
    with pytest.raises(ValueError, match=r"negative for \['pits'\]"):
        build_weighting("static", TASKS, weights={"scratches": 0.0, "pits": -0.1})


def test_repr_mentions_hyperparameters() -> None:
    assert "tasks=3" in repr(build_weighting("equal", TASKS))
    static = build_weighting("static", TASKS, weights={"pits": 3.0})
    assert "weights={'pits': 3.0}" in repr(static)
