"""heads: output sizes, losses and decoding per task kind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_models.kinds import KINDS
from mtl_models.losses import corn_predict
from mtl_models.nn.heads import build_head
from mtl_models.tasks import TaskSpec

TASKS = [
    TaskSpec("cls", "classification", n_classes=4),
    TaskSpec("bin", "binary"),
    TaskSpec("ord", "ordinal", n_classes=6),
    TaskSpec("reg", "regression", target_mean=10.0, target_std=2.0),
]
N_OUTPUTS = {"cls": 4, "bin": 1, "ord": 5, "reg": 1}
N_PROBA = {"cls": 4, "bin": 2, "ord": 6, "reg": None}
TARGETS = {
    "cls": [0.0, 3.0, 1.0],
    "bin": [1.0, 0.0, 1.0],
    "ord": [0.0, 5.0, 2.0],
    "reg": [8.0, 12.5, 10.0],
}


def test_the_tests_cover_every_shipped_kind() -> None:
    assert {t.kind for t in TASKS} <= set(KINDS.names())
    assert {t.kind for t in TASKS} == {"classification", "binary", "ordinal", "regression"}


@pytest.mark.parametrize("hidden", [0, 16], ids=["linear", "mlp"])
@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.kind)
def test_output_and_decode_shapes(task: TaskSpec, hidden: int) -> None:
    head = build_head(task, in_features=8, hidden=hidden, dropout=0.1)
    assert head.n_outputs == N_OUTPUTS[task.name]
    last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    assert last.out_features == N_OUTPUTS[task.name]

    out = head(torch.randn(3, 8))
    assert out.shape == (3, N_OUTPUTS[task.name])
    decoded = head.decode(out)
    assert decoded.prediction.shape == (3,)
    if N_PROBA[task.name] is None:
        assert decoded.proba is None
        assert decoded.prediction.is_floating_point()
    else:
        assert decoded.proba is not None
        assert decoded.proba.shape == (3, N_PROBA[task.name])
        torch.testing.assert_close(decoded.proba.sum(dim=1), torch.ones(3))
        assert decoded.prediction.dtype == torch.int64
        assert int(decoded.prediction.max()) < N_PROBA[task.name]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.kind)
def test_loss_is_finite_scalar_with_gradient(task: TaskSpec) -> None:
    head = build_head(task, in_features=8, hidden=16, dropout=0.0)
    loss = head.loss(head(torch.randn(3, 8)), torch.tensor(TARGETS[task.name]))
    assert loss.ndim == 0
    assert bool(torch.isfinite(loss))
    loss.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in head.parameters())


def test_classification_decode_is_softmax_argmax() -> None:
    head = build_head(TASKS[0], 8, 0, 0.0)
    outputs = torch.tensor([[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 0.0, 0.0]])
    decoded = head.decode(outputs)
    torch.testing.assert_close(decoded.prediction, torch.tensor([1, 0]))
    torch.testing.assert_close(decoded.proba, torch.softmax(outputs, dim=1))


def test_binary_uses_one_logit_and_thresholds_its_sigmoid() -> None:
    head = build_head(TASKS[1], 8, 0, 0.0)
    logits = torch.tensor([-2.0, -0.2, 0.0, 0.1, 3.0])
    decoded = head.decode(logits[:, None])
    # positive when sigmoid > 0.5: logit 0 (exactly 0.5) and -0.2 (0.45) stay negative
    torch.testing.assert_close(decoded.prediction, torch.tensor([0, 0, 0, 1, 1]))
    positive = torch.sigmoid(logits)
    torch.testing.assert_close(decoded.proba, torch.stack([1 - positive, positive], dim=1))
    # BCE on one logit: a confident right answer costs little, a confident wrong one a lot
    target = torch.tensor([1.0])
    assert float(head.loss(torch.tensor([[6.0]]), target)) < 0.01
    assert float(head.loss(torch.tensor([[-6.0]]), target)) > 5.0


def test_ordinal_decode_uses_corn() -> None:
    head = build_head(TASKS[2], 8, 0, 0.0)
    outputs = torch.tensor([[5.0, 5.0, -5.0, -5.0, -5.0], [0.5, 0.5, 0.5, 0.5, 0.5]])
    decoded = head.decode(outputs)
    torch.testing.assert_close(decoded.prediction, corn_predict(outputs))
    torch.testing.assert_close(decoded.prediction, torch.tensor([2, 1]))


def test_regression_decodes_to_original_units_and_learns_standardised_targets() -> None:
    head = build_head(TASKS[3], 8, 0, 0.0)  # mean 10, std 2
    decoded = head.decode(torch.tensor([[0.0], [1.0], [-2.0]]))
    torch.testing.assert_close(decoded.prediction, torch.tensor([10.0, 12.0, 6.0]))
    # target 12 is +1 standard deviation: an output of 1 is exact, an output of 12 is not
    target = torch.tensor([12.0])
    assert float(head.loss(torch.tensor([[1.0]]), target)) == 0.0
    assert float(head.loss(torch.tensor([[12.0]]), target)) == pytest.approx(11.0**2)
