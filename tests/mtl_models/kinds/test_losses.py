"""losses: CORN probabilities, prediction rule and loss, on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtl_models.losses import corn_loss, corn_predict, corn_probabilities


def reference_corn_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loop of the CORN authors' coral_pytorch: BCE summed over each conditional subset."""
    total, count = torch.zeros(()), 0
    for k in range(logits.shape[1]):
        subset = target >= k
        if subset.any():
            label = (target[subset] > k).float()
            total = total + F.binary_cross_entropy_with_logits(
                logits[subset, k], label, reduction="sum"
            )
            count += int(subset.sum())
    return total / count


@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["moderate", "saturated"])
def test_probabilities_are_a_distribution(scale: float) -> None:
    logits = scale * torch.randn(32, 5)
    proba = corn_probabilities(logits)
    assert proba.shape == (32, 6)
    assert bool((proba >= 0).all())
    torch.testing.assert_close(proba.sum(dim=1), torch.ones(32))


def test_probabilities_hand_computed() -> None:
    # sigmoid(0) = 0.5: P(y > 0) = 0.5, P(y > 1) = 0.25 -> [1 - 0.5, 0.5 - 0.25, 0.25]
    proba = corn_probabilities(torch.zeros(1, 2))
    torch.testing.assert_close(proba, torch.tensor([[0.5, 0.25, 0.25]]))


def test_predict_counts_cumulative_probabilities_above_half() -> None:
    logits = torch.tensor(
        [
            [5.0, 5.0, 5.0],  # P(y > k) ~ 0.99, 0.99, 0.98 -> 3
            [-5.0, 5.0, 5.0],  # first step fails: 0
            [5.0, -5.0, 5.0],  # 1
            [5.0, 5.0, -5.0],  # 2
            # every sigmoid is 0.62 > 0.5, but the cumulative products are 0.62, 0.39, 0.24
            [0.5, 0.5, 0.5],
        ]
    )
    torch.testing.assert_close(corn_predict(logits), torch.tensor([3, 0, 1, 2, 1]))


def test_predict_is_a_valid_level_for_random_logits() -> None:
    pred = corn_predict(3 * torch.randn(64, 5))
    assert pred.dtype == torch.int64
    assert int(pred.min()) >= 0
    assert int(pred.max()) <= 5


def test_loss_hand_computed_at_zero_logits() -> None:
    # K = 4: target 0 takes part in sub-task 0 only, target 2 in sub-tasks 0, 1, 2 -> 4 terms of
    # BCE(0 logit) = log 2 each
    loss = corn_loss(torch.zeros(2, 3), torch.tensor([0.0, 2.0]))
    assert float(loss) == pytest.approx(math.log(2))


def test_loss_ignores_thresholds_outside_the_conditional_subset() -> None:
    a, b = 1.3, -0.4
    target = torch.tensor([1.0])
    expected = (F.softplus(torch.tensor(-a)) + F.softplus(torch.tensor(b))) / 2
    for c in (-10.0, 0.0, 10.0):  # sub-task 2 needs y >= 2: it never sees this sample
        loss = corn_loss(torch.tensor([[a, b, c]]), target)
        torch.testing.assert_close(loss, expected)


def test_loss_matches_reference_implementation() -> None:
    logits = torch.randn(40, 5)
    target = torch.randint(0, 6, (40,)).float()
    torch.testing.assert_close(corn_loss(logits, target), reference_corn_loss(logits, target))


def test_loss_is_lower_when_logits_agree_with_targets() -> None:
    target = torch.tensor([0.0, 1.0, 3.0, 5.0])
    exceeds = target[:, None] > torch.arange(5)[None, :]
    agree = torch.where(exceeds, 4.0, -4.0)
    assert float(corn_loss(agree, target)) < 0.05
    assert float(corn_loss(agree, target)) < float(corn_loss(-agree, target)) - 3.0
    torch.testing.assert_close(corn_predict(agree), target.long())


def test_loss_gradient_flows_only_to_subset_thresholds() -> None:
    logits = torch.zeros(2, 3, requires_grad=True)
    corn_loss(logits, torch.tensor([0.0, 3.0])).backward()
    assert logits.grad is not None
    assert bool(torch.isfinite(logits.grad).all())
    # target 0 only trains threshold 0; target 3 trains all three
    assert logits.grad[0, 0] != 0
    torch.testing.assert_close(logits.grad[0, 1:], torch.zeros(2))
    assert bool((logits.grad[1] != 0).all())
    # pushing towards "exceeds" for target 3 means decreasing the loss by raising the logits
    assert bool((logits.grad[1] < 0).all())
