"""weighting: each method's own numbers, through the real ``backward`` interface.

Gradient aggregators get hand-built task gradients: a shared vector ``p``, ``features = p * 1``
and linear losses ``L_t = g_t @ features``, so the per-task gradient of ``p`` is exactly ``g_t``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from mtl_models.nn.architectures import HardSharing
from mtl_models.nn.backbones import ConvNet
from mtl_models.tasks import TaskSpec
from mtl_models.train.trainer import Trainer
from mtl_models.weighting import StepResult, WeightingMethod, build_weighting

AGGREGATORS = [
    "upgrad", "pcgrad", "cagrad", "mgda", "nash_mtl", "aligned_mtl",
    "gradvac", "imtl_g", "dualproj", "fairgrad", "config",
]  # fmt: skip
TASKS = ["scratches", "pits", "corrosion"]
LOSSES = [0.7, 1.9, 0.2]

G1 = torch.tensor([1.0, 0.0])
G2 = torch.tensor([-1.0, 1.0])  # G1 @ G2 = -1: the two tasks conflict
POINT = torch.tensor([0.3, -0.7])  # L1 = 0.3, L2 = -1.0 there


def leaf_losses(values: list[float]) -> list[Tensor]:
    return [torch.tensor(v, requires_grad=True) for v in values]


def conflicting_step(
    method: str, gradients: list[Tensor], point: Tensor
) -> tuple[Tensor, StepResult]:
    """``p.grad`` and the step result of ``method`` on losses whose task gradients are given."""
    p = point.clone().requires_grad_(True)
    features = p * 1.0
    losses = [g @ features for g in gradients]
    names = [f"task{t}" for t in range(len(gradients))]
    result = build_weighting(method, names).backward(losses, features, [p])
    assert p.grad is not None
    return p.grad, result


# --- gradient aggregators on constructed conflicts ----------------------------------------------


def test_pcgrad_projects_out_the_conflicting_components() -> None:
    # By hand: g1' = g1 - (g1.g2 / |g2|^2) g2 = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5)
    #          g2' = g2 - (g2.g1 / |g1|^2) g1 = (-1, 1) + 1 (1, 0)  = (0, 1)
    g1_projected = torch.tensor([0.5, 0.5])
    g2_projected = torch.tensor([0.0, 1.0])
    assert float(g1_projected @ G2) == 0.0
    assert float(g2_projected @ G1) == 0.0
    grad, result = conflicting_step("pcgrad", [G1, G2], POINT)
    torch.testing.assert_close(grad, torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(grad, g1_projected + g2_projected)
    # (0.5, 1.5) = 2 g1 + 1.5 g2, so the weighted loss is 2 * 0.3 + 1.5 * (-1.0)
    assert result.weights is not None
    torch.testing.assert_close(result.weights, torch.tensor([2.0, 1.5]))
    torch.testing.assert_close(result.loss, torch.tensor(2.0 * 0.3 + 1.5 * -1.0))


def test_upgrad_never_opposes_a_task_of_two() -> None:
    grad, _ = conflicting_step("upgrad", [G1, G2], POINT)
    assert float(grad @ G1) >= -1e-6
    assert float(grad @ G2) >= -1e-6
    # By hand: each g_t projected onto the dual cone {x: x.g1 >= 0, x.g2 >= 0}, then averaged.
    # g1 breaks x.g2 >= 0 -> (0.5, 0.5); g2 breaks x.g1 >= 0 -> (0, 1); mean (0.25, 0.75).
    # (The plain sum (0, 1) is orthogonal to g1, so it would fail here.)
    torch.testing.assert_close(grad, torch.tensor([0.25, 0.75]), rtol=0, atol=1e-3)


def test_upgrad_never_opposes_a_task_of_three() -> None:
    gradients = [
        torch.tensor([1.0, 0.0, 0.0]),
        torch.tensor([-2.0, 1.0, 0.0]),
        torch.tensor([0.0, -2.0, 1.0]),
    ]
    # the plain sum (-1, -1, 1) would increase the first task's loss
    assert float(sum(gradients) @ gradients[0]) < 0
    grad, result = conflicting_step("upgrad", gradients, torch.tensor([0.1, 0.2, 0.3]))
    assert float(grad.norm()) > 0.1
    for t, g in enumerate(gradients):
        assert float(grad @ g) >= -1e-6, t
    assert result.weights is not None
    torch.testing.assert_close(grad, result.weights @ torch.stack(gradients))


@pytest.mark.parametrize("method", AGGREGATORS)
def test_gradient_cosine_of_the_constructed_conflict(method: str) -> None:
    _, result = conflicting_step(method, [G1, G2], POINT)
    assert result.gradient_cosine is not None
    # g1.g2 / (|g1| |g2|) = -1 / (1 * sqrt(2))
    expected = torch.tensor([[1.0, -1 / math.sqrt(2)], [-1 / math.sqrt(2), 1.0]])
    torch.testing.assert_close(result.gradient_cosine, expected)


# --- scalarisers: weights at initialisation, by hand ---------------------------------------------

_GEOMETRIC_MEAN = (0.7 * 1.9 * 0.2) ** (1 / 3)
_INVERSE_SUM = 1 / 0.7 + 1 / 1.9 + 1 / 0.2


@pytest.mark.parametrize(
    ("method", "weights", "loss"),
    [
        ("equal", [1.0, 1.0, 1.0], 0.7 + 1.9 + 0.2),
        # UW at log-variance 0: 0.5 e^0 L + 0.5 * 0
        ("uw", [0.5, 0.5, 0.5], 0.5 * (0.7 + 1.9 + 0.2)),
        # IMTL-L at scale 0: e^0 L - 0
        ("imtl_l", [1.0, 1.0, 1.0], 0.7 + 1.9 + 0.2),
        ("dwa", [1.0, 1.0, 1.0], 0.7 + 1.9 + 0.2),
        # d(GM)/dL_t = GM / (T L_t)
        ("gls", [_GEOMETRIC_MEAN / (3 * v) for v in LOSSES], _GEOMETRIC_MEAN),
        # FAMO at uniform logits z: loss c * sum(z log L) with c = 1 / sum(z / L) held constant,
        # so weights 1 / L_t normalised to sum 1
        (
            "famo",
            [1 / v / _INVERSE_SUM for v in LOSSES],
            sum(math.log(v) for v in LOSSES) / _INVERSE_SUM,
        ),
    ],
)
def test_initial_weights_and_loss(method: str, weights: list[float], loss: float) -> None:
    losses = leaf_losses(LOSSES)
    result = build_weighting(method, TASKS).backward(losses)
    assert result.weights is not None
    torch.testing.assert_close(result.weights, torch.tensor(weights))
    torch.testing.assert_close(result.loss, torch.tensor(loss))
    for loss_t, w in zip(losses, weights, strict=True):  # the gradient that reached each loss
        assert loss_t.grad is not None
        torch.testing.assert_close(loss_t.grad, torch.tensor(w))


def test_stch_leans_towards_the_worst_task() -> None:
    result = build_weighting("stch", TASKS, mu=0.1).backward(leaf_losses(LOSSES))
    assert result.weights is not None
    assert int(result.weights.argmax()) == LOSSES.index(max(LOSSES))


def test_rlw_draws_positive_weights_summing_to_one_fresh_each_step() -> None:
    weighting = build_weighting("rlw", TASKS)
    first = weighting.backward(leaf_losses(LOSSES)).weights
    second = weighting.backward(leaf_losses(LOSSES)).weights
    assert first is not None and second is not None
    for w in (first, second):
        assert bool((w > 0).all())
        torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    assert not torch.allclose(first, second)


# --- methods with their own state ---------------------------------------------------------------


def test_famo_lowers_the_weight_of_the_task_that_descends_on_its_own() -> None:
    weighting = build_weighting("famo", ["fast", "slow"])
    assert weighting.needs_losses_after_step
    initial = weighting.backward(leaf_losses([1.0, 1.0])).weights
    assert initial is not None
    torch.testing.assert_close(initial, torch.tensor([0.5, 0.5]))
    for _ in range(5):
        weighting.backward(leaf_losses([1.0, 1.0]))
        weighting.after_step(torch.tensor([0.5, 1.0]))  # only 'fast' fell across the step
    later = weighting.backward(leaf_losses([1.0, 1.0])).weights
    assert later is not None
    assert float(later[0]) < 0.45 and float(later[1]) > 0.55, later
    torch.testing.assert_close(later.sum(), torch.tensor(1.0))


def test_dwa_is_uniform_for_two_epochs_then_follows_the_descent_rates() -> None:
    weighting = build_weighting("dwa", ["fast", "flat"], temperature=2.0)
    for epoch_losses in ([[1.0, 2.0]], [[0.4, 2.0], [0.6, 2.0]]):  # epoch means: (1, 2), (0.5, 2)
        for losses in epoch_losses:
            weights = weighting.backward(leaf_losses(losses)).weights
            assert weights is not None
            torch.testing.assert_close(weights, torch.ones(2))
        weighting.end_epoch()
    weights = weighting.backward(leaf_losses([0.3, 2.0])).weights
    assert weights is not None
    # rates 0.5 / 1 and 2 / 2; weights 2 * softmax(rate / 2)
    fast, flat = math.exp(0.5 / 2), math.exp(1.0 / 2)
    torch.testing.assert_close(weights, torch.tensor([2 * fast, 2 * flat]) / (fast + flat))


@pytest.mark.parametrize(
    ("method", "expected_grad"),
    [
        # UW: d/ds [0.5 e^-s L + 0.5 s] at s = 0 is 0.5 - 0.5 L
        ("uw", [0.5 - 0.5 * v for v in LOSSES]),
        # IMTL-L: d/ds [e^s L - s] at s = 0 is L - 1
        ("imtl_l", [v - 1.0 for v in LOSSES]),
    ],
)
def test_learnable_weightings_get_gradients(method: str, expected_grad: list[float]) -> None:
    weighting = build_weighting(method, TASKS)
    params = list(weighting.parameters())
    assert params
    weighting.backward(leaf_losses(LOSSES))
    for p in params:
        assert p.grad is not None
    torch.testing.assert_close(
        torch.cat([p.grad.flatten() for p in params]), torch.tensor(expected_grad)
    )


@pytest.mark.parametrize("method", ["uw", "imtl_l"])
def test_trainer_steps_the_weighting_parameters(method: str) -> None:
    tasks = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
    model = HardSharing(tasks, ConvNet(1, width=4, depth=1, pool_size=1), 1, head_hidden=4)
    weighting = build_weighting(method, ["a", "b"])
    trainer = Trainer(model, weighting, epochs=1, lr=0.1)
    before = [p.detach().clone() for p in weighting.parameters()]
    trainer.train_epoch(
        [(torch.rand(4, 1, 8, 8), torch.tensor([[1, 0.5], [0, -1], [1, 2], [0, 0]]))]
    )
    after = list(weighting.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


# --- static weights -----------------------------------------------------------------------------


def test_static_weights_default_to_one_for_unnamed_tasks() -> None:
    weighting = build_weighting("static", TASKS, weights={"scratches": 2.0, "corrosion": 0.5})
    result = weighting.backward(leaf_losses(LOSSES))
    assert result.weights is not None
    torch.testing.assert_close(result.weights, torch.tensor([2.0, 1.0, 0.5]))
    torch.testing.assert_close(result.loss, torch.tensor(2.0 * 0.7 + 1.0 * 1.9 + 0.5 * 0.2))


def test_static_without_weights_is_equal() -> None:
    result = build_weighting("static", TASKS).backward(leaf_losses(LOSSES))
    assert result.weights is not None
    torch.testing.assert_close(result.weights, torch.ones(3))


def test_static_rejects_unknown_task() -> None:
    with pytest.raises(ValueError, match=r"unknown tasks \['rust'\]"):
        build_weighting("static", TASKS, weights={"pits": 1.0, "rust": 2.0})


def test_static_rejects_negative_weight() -> None:
    with pytest.raises(ValueError, match=r"negative for \['pits'\]"):
        build_weighting("static", TASKS, weights={"scratches": 0.0, "pits": -0.1})


def test_static_weights_follow_the_module_to_a_device() -> None:
    # 'meta' stands in for a GPU: the weight vector must be a buffer that moves with .to()
    weighting = build_weighting("static", TASKS, weights={"pits": 3.0}).to("meta")
    assert isinstance(weighting, WeightingMethod)
    buffer = weighting.scalarizer.weights
    assert buffer.device.type == "meta"
    assert any(b is buffer for b in weighting.buffers())


def test_only_parameters_learned_by_backward_go_to_the_trainers_optimizer() -> None:
    names = ["a", "b"]
    uw = build_weighting("uw", names)
    assert [p.shape for p in uw.optimizer_parameters()] == [torch.Size([2])]
    famo = build_weighting("famo", names)
    assert list(famo.parameters())  # FAMO has task logits...
    assert famo.optimizer_parameters() == []  # ...but learns them with its own Adam
    assert build_weighting("upgrad", names).optimizer_parameters() == []
