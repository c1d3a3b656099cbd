"""Class imbalance: per-class weights fitted on labels, weighted/focal losses, heads and specs.

The losses are checked against torch's own weighted cross-entropy and against the formulas
written out by hand; a small imbalanced toy problem checks that the weights do what they are
for: a model trained with them finds the rare classes a plain one ignores.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from mtl_models.losses import (
    EFFECTIVE_NUMBER_BETA,
    class_weights,
    corn_loss,
    sigmoid_loss,
    softmax_loss,
)
from mtl_models.nn.checkpoint import SPEC_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from mtl_models.nn.heads import build_head
from mtl_models.nn.model import ModelSpec, build_model
from mtl_models.tasks import TaskSpec

NAN = float("nan")
# 6 of class 0, 3 of class 1, 1 of class 3; class 2 never occurs
LABELS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 3], dtype=float)
COUNTS = np.array([6, 3, 0, 1])


# --- class_weights ------------------------------------------------------------------------


def test_balanced_matches_scikit_learn_and_the_hand_formula() -> None:
    weights = class_weights(LABELS, 4, "balanced")
    assert isinstance(weights, tuple) and len(weights) == 4
    present = np.array([0, 1, 3])
    sklearn = compute_class_weight("balanced", classes=present, y=LABELS.astype(int))
    np.testing.assert_allclose(np.array(weights)[present], sklearn)
    # n / (k * count) with n = 10 samples, k = 3 classes present
    np.testing.assert_allclose(weights, [10 / (3 * 6), 10 / (3 * 3), 0.0, 10 / (3 * 1)])
    # every sample then counts as much as the samples of the other classes together
    np.testing.assert_allclose((COUNTS * np.array(weights))[present], [10 / 3] * 3)


@pytest.mark.parametrize("method", ["balanced", "effective_number"])
def test_an_absent_class_gets_weight_zero(method: str) -> None:
    weights = class_weights(LABELS, 6, method)  # classes 2, 4 and 5 never occur
    assert weights is not None
    assert [weights[k] for k in (2, 4, 5)] == [0.0, 0.0, 0.0]
    assert all(weights[k] > 0 for k in (0, 1, 3))


def test_effective_number_follows_its_formula_scaled_to_the_present_classes() -> None:
    beta = 0.9
    weights = np.array(class_weights(LABELS, 4, "effective_number", beta=beta))
    present = COUNTS > 0
    raw = (1 - beta) / (1 - beta ** COUNTS[present])
    np.testing.assert_allclose(weights[present], raw * 3 / raw.sum())
    assert weights.sum() == pytest.approx(3.0)  # sums to the number of classes present
    assert weights[2] == 0.0
    # the default beta is the one documented for classes of tens to thousands of samples
    default = np.array(class_weights(LABELS, 4, "effective_number"))
    raw = (1 - EFFECTIVE_NUMBER_BETA) / (1 - EFFECTIVE_NUMBER_BETA ** COUNTS[present])
    np.testing.assert_allclose(default[present], raw * 3 / raw.sum())


def test_effective_number_decreases_with_count_and_tends_to_balanced_as_beta_tends_to_one() -> None:
    counts = [500, 120, 30, 4]
    labels = np.repeat(np.arange(4), counts).astype(float)
    balanced = np.array(class_weights(labels, 4, "balanced"))
    gaps = []
    for beta in (0.9, 0.99, 0.999, 0.9999, 1 - 1e-7):
        weights = np.array(class_weights(labels, 4, "effective_number", beta=beta))
        assert weights.sum() == pytest.approx(4.0)
        assert np.all(np.diff(weights) > 0), f"beta {beta}: rarer classes must weigh more"
        # balanced weights are ~ 1 / count: compare the shapes, both scaled to sum to 4
        gaps.append(np.abs(weights - balanced * 4 / balanced.sum()).max())
    assert all(a > b for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[-1] < 1e-3
    # beta -> 0 counts every present class once: equal weights
    np.testing.assert_allclose(class_weights(labels, 4, "effective_number", beta=1e-9), [1.0] * 4)


def test_none_gives_no_weights() -> None:
    assert class_weights(LABELS, 4, "none") is None


@pytest.mark.parametrize("method", ["balanced", "effective_number"])
def test_missing_labels_are_ignored(method: str) -> None:
    with_missing = np.concatenate([[NAN, NAN], LABELS[:5], [NAN], LABELS[5:], [NAN] * 7])
    assert class_weights(with_missing, 4, method) == pytest.approx(class_weights(LABELS, 4, method))


@pytest.mark.parametrize("labels", [LABELS, np.full(4, NAN)], ids=["labelled", "all-missing"])
def test_an_unknown_method_raises(labels: np.ndarray) -> None:
    # the method is wrong whatever the labels are: a task whose train split happens to have
    # no label must not let a typo pass
    with pytest.raises(ValueError, match="unknown class weighting 'balance'"):
        class_weights(labels, 4, "balance")  # type: ignore[arg-type]


# --- losses ---------------------------------------------------------------------------------

WEIGHTS3 = torch.tensor([0.2, 1.5, 4.0])


def softmax_batch() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(
        [[2.0, 0.1, -1.0], [0.3, 0.2, 0.1], [-1.0, 3.0, 0.0], [0.0, 0.5, 0.4], [1.0, 1.0, -2.0]]
    )
    return logits, torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0])


def focal_terms(log_p_true: torch.Tensor, gamma: float) -> torch.Tensor:
    """Lin et al.'s focal loss per sample, written out: -(1 - p)^gamma log p."""
    p = log_p_true.exp()
    return -((1 - p) ** gamma) * log_p_true


def test_weighted_softmax_loss_equals_torch_weighted_cross_entropy() -> None:
    logits, target = softmax_batch()
    torch.testing.assert_close(
        softmax_loss(logits, target, WEIGHTS3),
        F.cross_entropy(logits, target.long(), weight=WEIGHTS3),
    )
    # and the weights matter here: class 2 (two samples) weighs 20x class 0
    assert not torch.allclose(softmax_loss(logits, target, WEIGHTS3), softmax_loss(logits, target))


def test_softmax_with_gamma_zero_and_no_weights_is_plain_cross_entropy() -> None:
    logits, target = softmax_batch()
    expected = F.cross_entropy(logits, target.long())
    torch.testing.assert_close(softmax_loss(logits, target), expected)
    torch.testing.assert_close(softmax_loss(logits, target, None, 0.0), expected)
    torch.testing.assert_close(softmax_loss(logits, target, torch.ones(3), 0.0), expected)


def test_softmax_focal_loss_matches_the_hand_formula_per_sample() -> None:
    logits, target = softmax_batch()
    log_p = torch.log_softmax(logits, dim=1).gather(1, target.long()[:, None]).squeeze(1)
    per_sample = focal_terms(log_p, 2.0)
    for i in range(len(target)):
        torch.testing.assert_close(
            softmax_loss(logits[i : i + 1], target[i : i + 1], gamma=2.0), per_sample[i]
        )
    torch.testing.assert_close(softmax_loss(logits, target, gamma=2.0), per_sample.mean())
    w = WEIGHTS3[target.long()]
    torch.testing.assert_close(
        softmax_loss(logits, target, WEIGHTS3, 2.0), (w * per_sample).sum() / w.sum()
    )


def test_focal_loss_fades_confident_samples_more_than_uncertain_ones() -> None:
    target = torch.tensor([0.0])
    confident, uncertain = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[0.2, 0.0, 0.0]])

    def ratio(logits: torch.Tensor, gamma: float) -> float:
        return float(softmax_loss(logits, target, gamma=gamma) / softmax_loss(logits, target))

    for gamma in (0.5, 1.0, 2.0, 5.0):
        # the factor is (1 - p): ~0.035 for the confident sample, ~0.62 for the uncertain one
        assert ratio(confident, gamma) < ratio(uncertain, gamma) < 1.0
    assert ratio(confident, 2.0) < 0.01 < 0.3 < ratio(uncertain, 2.0)
    assert ratio(confident, 2.0) < ratio(confident, 1.0)  # a larger gamma fades it further
    # a wrong answer keeps nearly its whole cross-entropy
    assert ratio(torch.tensor([[-4.0, 0.0, 0.0]]), 2.0) > 0.95


def test_a_class_of_weight_zero_does_not_count() -> None:
    logits, target = softmax_batch()
    weights = torch.tensor([1.0, 1.0, 0.0])
    moved = logits.clone()
    moved[target == 2] = torch.tensor([9.0, -9.0, -9.0])  # samples of class 2 now badly wrong
    torch.testing.assert_close(
        softmax_loss(moved, target, weights), softmax_loss(logits, target, weights)
    )
    keep = target != 2
    torch.testing.assert_close(
        softmax_loss(logits, target, weights), softmax_loss(logits[keep], target[keep])
    )


def test_weighted_sigmoid_loss_hand_computed() -> None:
    logit = torch.tensor([2.0, -1.0, 0.5, -3.0])
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    weights = torch.tensor([0.25, 3.0])  # negatives, positives
    # -log sigmoid(x) for positives, -log(1 - sigmoid(x)) = softplus(x) for negatives
    nll = torch.stack([F.softplus(-logit[0]), F.softplus(-logit[1]), *F.softplus(logit[2:])])
    w = torch.tensor([3.0, 3.0, 0.25, 0.25])
    torch.testing.assert_close(sigmoid_loss(logit, target, weights), (w * nll).sum() / w.sum())
    torch.testing.assert_close(sigmoid_loss(logit, target), nll.mean())
    focal = focal_terms(-nll, 2.0)
    torch.testing.assert_close(sigmoid_loss(logit, target, gamma=2.0), focal.mean())
    torch.testing.assert_close(
        sigmoid_loss(logit, target, weights, 2.0), (w * focal).sum() / w.sum()
    )


def test_corn_loss_with_unit_weights_is_the_unweighted_loss() -> None:
    logits = torch.randn(30, 5)
    target = torch.randint(0, 6, (30,)).float()
    torch.testing.assert_close(corn_loss(logits, target, torch.ones(6)), corn_loss(logits, target))
    # a common scale of the weights cancels out
    torch.testing.assert_close(
        corn_loss(logits, target, torch.full((6,), 7.0)), corn_loss(logits, target)
    )


def test_weighted_corn_loss_hand_computed() -> None:
    # K = 4 levels, 3 conditional logits; sample i takes part in sub-tasks 0..y_i
    logits = torch.tensor([[1.0, -0.5, 0.3], [-2.0, 0.7, 1.2], [0.4, 0.4, -1.0]])
    target = torch.tensor([0.0, 3.0, 1.0])
    weights = torch.tensor([2.0, 0.5, 1.0, 4.0])

    def bce(x: float, exceeds: bool) -> torch.Tensor:
        return F.softplus(torch.tensor(-x if exceeds else x))

    # sample 0 (level 0): sub-task 0, label "not above 0"
    # sample 1 (level 3): sub-tasks 0, 1, 2, all "above"
    # sample 2 (level 1): sub-task 0 "above", sub-task 1 "not above 1"
    terms = [
        (2.0, bce(1.0, False)),
        (4.0, bce(-2.0, True)),
        (4.0, bce(0.7, True)),
        (4.0, bce(1.2, True)),
        (0.5, bce(0.4, True)),
        (0.5, bce(0.4, False)),
    ]
    total_weight = sum(w for w, _ in terms)
    expected = sum(w * t for w, t in terms) / total_weight
    torch.testing.assert_close(corn_loss(logits, target, weights), expected)
    focal = sum(w * focal_terms(-t, 1.5) for w, t in terms) / total_weight
    torch.testing.assert_close(corn_loss(logits, target, weights, 1.5), focal)


LOSSES: dict[str, tuple[Any, Any, torch.Tensor]] = {
    "softmax": (softmax_loss, lambda n: torch.randn(n, 4), torch.tensor([0.1, 1.0, 2.0, 5.0])),
    "sigmoid": (sigmoid_loss, lambda n: torch.randn(n), torch.tensor([0.3, 3.0])),
    "corn": (corn_loss, lambda n: torch.randn(n, 3), torch.tensor([0.1, 1.0, 2.0, 5.0])),
}


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_and_focal_losses_have_finite_gradients(name: str, gamma: float) -> None:
    loss_fn, make_logits, weights = LOSSES[name]
    logits = (3 * make_logits(16)).requires_grad_()
    target = torch.randint(0, len(weights), (16,)).float()
    loss = loss_fn(logits, target, weights, gamma)
    loss.backward()
    assert bool(torch.isfinite(loss)) and float(loss.detach()) > 0
    assert logits.grad is not None
    assert bool(torch.isfinite(logits.grad).all())
    assert float(logits.grad.abs().sum()) > 0


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("name", list(LOSSES))
def test_focal_gradients_stay_finite_for_a_sample_classified_with_certainty(
    name: str, gamma: float
) -> None:
    """A trained model is often certain of its easy samples: in float32 a logit margin of
    ~17 already rounds p(true class) to 1 and the per-sample loss to 0. The focal factor
    (1 - p) ** gamma has an infinite derivative at p = 1 when gamma < 1, which must not
    turn into a NaN gradient (one NaN poisons every parameter in the optimiser step)."""
    loss_fn, _, weights = LOSSES[name]
    confident = {
        "softmax": [[30.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]],
        "sigmoid": [30.0, 0.5],
        "corn": [[30.0, -30.0, 0.0], [0.5, 0.0, 0.0]],
    }[name]
    target = {"softmax": [0.0, 1.0], "sigmoid": [1.0, 0.0], "corn": [1.0, 2.0]}[name]
    logits = torch.tensor(confident, requires_grad=True)
    loss = loss_fn(logits, torch.tensor(target), weights, gamma)
    loss.backward()
    assert bool(torch.isfinite(loss))
    assert logits.grad is not None
    assert bool(torch.isfinite(logits.grad).all()), f"gamma {gamma}: {logits.grad}"


# --- heads, task specs, model specs ---------------------------------------------------------

WEIGHTED = {
    "classification": TaskSpec("cls", "classification", n_classes=3, class_weights=(0.5, 2.0, 8.0)),
    "binary": TaskSpec("bin", "binary", class_weights=(0.6, 3.0)),
    "ordinal": TaskSpec("ord", "ordinal", n_classes=4, class_weights=(0.4, 1.0, 2.0, 6.0)),
}
# imbalanced batches: mostly class 0, one or two of the rarer classes
IMBALANCED = {
    "classification": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0],
    "binary": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0],
    "ordinal": [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0],
}


def unweighted(task: TaskSpec) -> TaskSpec:
    return TaskSpec(task.name, task.kind, n_classes=task.n_classes)


@pytest.mark.parametrize("kind", list(WEIGHTED))
def test_class_weights_buffer_is_not_saved_but_follows_the_module(kind: str) -> None:
    task = WEIGHTED[kind]
    head = build_head(task, in_features=8, hidden=16, dropout=0.0)
    assert head.class_weights is not None
    torch.testing.assert_close(head.class_weights, torch.tensor(task.class_weights))
    assert "class_weights" in dict(head.named_buffers())
    # the state dict, and so every checkpoint, is what it was without class weights
    plain = build_head(unweighted(task), in_features=8, hidden=16, dropout=0.0)
    assert plain.class_weights is None
    assert list(head.state_dict()) == list(plain.state_dict())
    assert not any("class_weights" in key for key in head.state_dict())
    plain.load_state_dict(head.state_dict())  # strict: no missing or unexpected keys
    head.to(torch.float64)
    assert head.class_weights.dtype == torch.float64
    out = head(torch.randn(4, 8, dtype=torch.float64))
    loss = head.loss(out, torch.tensor(IMBALANCED[kind][:4], dtype=torch.float64))
    assert bool(torch.isfinite(loss))


@pytest.mark.parametrize("kind", list(WEIGHTED))
def test_a_head_with_class_weights_weighs_its_rare_classes(kind: str) -> None:
    task = WEIGHTED[kind]
    weighted = build_head(task, in_features=8, hidden=16, dropout=0.0)
    plain = build_head(unweighted(task), in_features=8, hidden=16, dropout=0.0)
    plain.load_state_dict(weighted.state_dict())  # the same network, only the loss differs
    x, target = torch.randn(8, 8), torch.tensor(IMBALANCED[kind])
    with torch.no_grad():
        out = weighted(x)
    torch.testing.assert_close(plain(x), out)
    loss_w, loss_p = weighted.loss(out, target), plain.loss(out, target)
    assert abs(float(loss_w) - float(loss_p)) > 1e-3
    direct = {"classification": softmax_loss, "binary": sigmoid_loss, "ordinal": corn_loss}[kind]
    logits = out.squeeze(1) if kind == "binary" else out
    weights = torch.tensor(task.class_weights)
    torch.testing.assert_close(loss_w, direct(logits, target, weights))
    torch.testing.assert_close(loss_p, direct(logits, target))


@pytest.mark.parametrize("kind", list(WEIGHTED))
def test_a_head_uses_its_task_focal_gamma(kind: str) -> None:
    task = WEIGHTED[kind]
    focal = TaskSpec(
        task.name,
        task.kind,
        n_classes=task.n_classes,
        class_weights=task.class_weights,
        focal_gamma=2.0,
    )
    head = build_head(focal, in_features=8, hidden=16, dropout=0.0)
    with torch.no_grad():
        out, target = head(torch.randn(8, 8)), torch.tensor(IMBALANCED[kind])
    direct = {"classification": softmax_loss, "binary": sigmoid_loss, "ordinal": corn_loss}[kind]
    logits = out.squeeze(1) if kind == "binary" else out
    weights = torch.tensor(task.class_weights)
    torch.testing.assert_close(head.loss(out, target), direct(logits, target, weights, 2.0))
    assert float(head.loss(out, target)) < float(direct(logits, target, weights))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "classification", "n_classes": 3, "class_weights": (1.0, 2.0)}, "3 values"),
        ({"kind": "binary", "class_weights": (1.0, 2.0, 3.0)}, "2 values"),
        ({"kind": "ordinal", "n_classes": 3, "class_weights": (1.0, -0.1, 2.0)}, ">= 0"),
        ({"kind": "regression", "class_weights": (1.0,)}, "regression task has no class"),
        ({"kind": "classification", "n_classes": 3, "focal_gamma": -0.5}, "focal_gamma"),
        ({"kind": "regression", "focal_gamma": 2.0}, "focal_gamma"),
    ],
    ids=["too-few", "too-many", "negative", "regression-weights", "gamma-neg", "gamma-reg"],
)
def test_task_spec_rejects_invalid_imbalance_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        TaskSpec("pits_left", **kwargs)
    assert "task 'pits_left'" in str(info.value)


def test_task_spec_accepts_valid_imbalance_settings() -> None:
    spec = TaskSpec("t", "ordinal", n_classes=3, class_weights=[1, 0, 2.5], focal_gamma=1.5)
    assert spec.class_weights == (1.0, 0.0, 2.5)  # a list of ints becomes a tuple of floats
    assert all(isinstance(w, float) for w in spec.class_weights)
    assert TaskSpec("r", "regression", focal_gamma=0.0).focal_gamma == 0.0


def model_spec() -> ModelSpec:
    return ModelSpec(
        tasks=(
            TaskSpec("cls", "classification", n_classes=3, class_weights=(0.5, 2.0, 8.0)),
            TaskSpec("bin", "binary", class_weights=(0.6, 3.0), focal_gamma=2.0),
            TaskSpec("ord", "ordinal", n_classes=4, focal_gamma=0.5),
            TaskSpec("reg", "regression", target_mean=3.0, target_std=2.0),
        ),
        backbone="cnn",
        backbone_args={"width": 4, "depth": 2},
        head_hidden=8,
        image_size=16,
        channels=1,
    )


def test_model_spec_round_trips_class_weights_and_focal_gamma_through_json() -> None:
    spec = model_spec()
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["tasks"][0]["class_weights"] == [0.5, 2.0, 8.0]
    assert data["tasks"][1]["focal_gamma"] == 2.0
    assert data["tasks"][2]["class_weights"] is None
    loaded = ModelSpec.from_dict(data)
    assert loaded == spec
    assert loaded.tasks[0].class_weights == (0.5, 2.0, 8.0)


def test_checkpoint_restores_the_class_weights_from_the_spec(tmp_path: Path) -> None:
    spec = model_spec()
    model = build_model(spec).eval()
    save_checkpoint(model, spec, tmp_path)
    saved = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert not any("class_weights" in key for key in saved)
    loaded, loaded_spec = load_checkpoint(tmp_path / WEIGHTS_FILE, tmp_path / SPEC_FILE)
    assert loaded_spec == spec
    torch.testing.assert_close(loaded.head("cls").class_weights, torch.tensor([0.5, 2.0, 8.0]))
    torch.testing.assert_close(loaded.head("bin").class_weights, torch.tensor([0.6, 3.0]))
    assert loaded.head("ord").class_weights is None
    assert loaded.head("bin").task.focal_gamma == 2.0
    x = torch.rand(3, 1, 16, 16)
    labels = torch.tensor([[0.0, 1.0, 3.0, 2.0], [2.0, 0.0, 1.0, 4.0], [1.0, NAN, 0.0, 3.0]])
    torch.testing.assert_close(
        loaded.task_losses(loaded(x), labels), model.task_losses(model(x), labels)
    )


# --- behaviour: an imbalanced toy problem ---------------------------------------------------

# three unit-variance gaussians in 2-D, two units apart: separable well above chance, but a
# plain model gains most by calling nearly everything the 90% class
MEANS = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
SHARES = (900, 80, 20)  # 90 / 8 / 2 %


def gaussians(counts: tuple[int, ...], rng: np.random.Generator):
    x = np.concatenate([rng.normal(MEANS[k], 1.0, (n, 2)) for k, n in enumerate(counts)])
    y = np.repeat(np.arange(len(counts)), counts)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def recall_per_class(weights: tuple[float, ...] | None, seed: int, steps: int = 200) -> np.ndarray:
    """Train a linear softmax head full-batch on the imbalanced split, return its recall per
    class on a balanced test set (500 per class)."""
    rng = np.random.default_rng(seed)
    x_train, y_train = gaussians(SHARES, rng)
    x_test, y_test = gaussians((500, 500, 500), rng)
    torch.manual_seed(seed)
    task = TaskSpec("defect", "classification", n_classes=3, class_weights=weights)
    head = build_head(task, in_features=2, hidden=0, dropout=0.0)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(steps):
        optimiser.zero_grad()
        head.loss(head(x_train), y_train).backward()
        optimiser.step()
    with torch.no_grad():
        pred = head.decode(head(x_test)).prediction
    return np.array([float((pred[y_test == k] == k).float().mean()) for k in range(3)])


@pytest.mark.parametrize("method", ["balanced", "effective_number"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_weights_raise_the_recall_of_rare_classes(method: str, seed: int) -> None:
    train_labels = np.repeat(np.arange(3), SHARES).astype(float)
    weights = class_weights(train_labels, 3, method)  # type: ignore[arg-type]
    plain = recall_per_class(None, seed)
    weighted = recall_per_class(weights, seed)
    # measured over seeds 0-29: plain rare recall 0.05-0.51, weighted 0.72-0.88 (balanced)
    assert plain[0] > 0.95 and plain[1:].mean() < 0.4  # the plain model ignores the rare ones
    assert np.all(weighted[1:] >= plain[1:] + 0.2), (plain, weighted)
    assert weighted[1:].mean() >= plain[1:].mean() + 0.3, (plain, weighted)
    assert weighted.mean() >= plain.mean() + 0.15, (plain, weighted)  # balanced accuracy
    assert weighted[0] > 0.5  # at a price on the common class, not by giving it up
