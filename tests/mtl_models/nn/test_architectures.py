"""architectures: every registered architecture (``ARCHITECTURES``) against the contract of
``MultiTaskModel``, on every input kind: shapes, gradients, the features as a cut between the
shared and the task-specific parts, training, checkpoints, gradient methods, gates.

Parametrised over ``ARCHITECTURES.names()``: a new architecture is tested without edits here
(its hyperparameters are read from its signature, as the configuration reads them).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor
from torchjd.aggregation import Sum
from torchjd.autojac import jac_to_grad, mtl_backward

from mtl_models.inputs import ImageInput
from mtl_models.inputs.features import FeatureInput
from mtl_models.inputs.signal import SignalInput
from mtl_models.nn.architectures import ARCHITECTURES, DSelectK, MultiTaskModel, task_key
from mtl_models.nn.checkpoint import SPEC_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from mtl_models.nn.model import ModelSpec, build_backbone, build_model
from mtl_models.tasks import TaskSpec
from mtl_models.train.trainer import Trainer
from mtl_models.weighting import build_weighting

NAN = float("nan")
NAMES = ARCHITECTURES.names()
DEPTH = 3  # blocks of every backbone below
# "type" is an attribute of nn.Module: its module-dict key is "type_" (task_key)
TASKS = (
    TaskSpec("a", "classification", 3),
    TaskSpec("b", "regression"),
    TaskSpec("type", "binary"),
    TaskSpec("d", "ordinal", 4),
)
N_OUTPUTS = {"a": 3, "b": 1, "type": 1, "d": 3}
TABLE = FeatureInput(
    "tab", numeric=tuple(f"x{i}" for i in range(5)), mean=(0.0,) * 5, std=(1.0,) * 5
)
SIGNAL = SignalInput("sig", ("c1", "c2"), 64)
IMAGE = ImageInput("image", 32, 1)
# input kind -> (backbone, backbone_args, inputs)
KINDS: dict[str, tuple[str, dict[str, Any], tuple[Any, ...]]] = {
    "cnn": ("cnn", {"width": 4, "depth": DEPTH, "pool_size": 1}, (IMAGE,)),
    "cnn1d": ("auto", {"width": 4, "depth": DEPTH, "pool_size": 2}, (SIGNAL,)),
    "mlp": ("auto", {"width": 4, "depth": DEPTH}, (TABLE,)),
    "fusion": ("fusion", {"width": 4, "depth": DEPTH}, (TABLE, SIGNAL, IMAGE)),
}
SPLITS = (0, 1, 2, None)  # none shared, first stage, interior, all shared
# Non-default hyperparameters (small, for speed) where an architecture has them; any other
# architecture is built with its defaults.
ARGS: dict[str, dict[str, Any]] = {
    "mmoe": {"experts": 3},
    "dselect_k": {"experts": 3, "k": 2, "gamma": 0.5},
    "cgc": {"shared_experts": 2, "task_experts": 1},
    "ple": {"shared_experts": 1, "task_experts": 2},
    "cross_stitch": {"keep": 0.8},
}
# what every architecture is built from; its own keyword arguments after these are its
# hyperparameters (as in pipelines/config/model.py)
BUILT = frozenset(inspect.signature(MultiTaskModel.__init__).parameters)


def shared_count(split: int | None) -> int:
    return DEPTH if split is None else split


def accepts(name: str, split: int | None) -> bool:
    return ARCHITECTURES.get(name).split_problem(shared_count(split), DEPTH) is None


def shares(name: str, split: int | None) -> bool:
    return ARCHITECTURES.get(name).shares_parameters(shared_count(split), DEPTH)


def combos(*, sharing: bool = False) -> list[tuple[str, str, int | None]]:
    """``(architecture, kind, split)`` for the splits each architecture accepts (and, with
    ``sharing``, where some parameters feed every task)."""
    return [
        (name, kind, split)
        for name in NAMES
        for kind in KINDS
        for split in SPLITS
        if accepts(name, split) and (not sharing or shares(name, split))
    ]


def first_accepted_split(name: str) -> int:
    """The lowest shared stage count ``name`` accepts that shares parameters."""
    return next(s for s in (1, 2, 0) if accepts(name, s) and shares(name, s))


def spec(name: str, kind: str, split: int | None, **args: Any) -> ModelSpec:
    backbone, backbone_args, inputs = KINDS[kind]
    return ModelSpec(
        tasks=TASKS,
        backbone=backbone,
        backbone_args=dict(backbone_args),
        shared_depth=split,
        head_hidden=8,
        architecture=name,
        architecture_args=args if args else dict(ARGS.get(name, {})),
        inputs=inputs,
    )


def batch(kind: str, n: int) -> Tensor | dict[str, Tensor]:
    """Random inputs for ``kind``: images in [0, 1], standardised signals and table rows."""
    tensors = {}
    for spec_ in KINDS[kind][2]:
        shape = (n, *spec_.model_shape)
        tensors[spec_.name] = torch.rand(shape) if spec_.kind == "image" else torch.randn(shape)
    return next(iter(tensors.values())) if len(tensors) == 1 else tensors


def labels(n: int) -> Tensor:
    """Valid labels for ``TASKS``: class, value, 0/1, rank."""
    return torch.stack(
        [
            torch.randint(0, 3, (n,)).float(),
            torch.randn(n),
            torch.randint(0, 2, (n,)).float(),
            torch.randint(0, 4, (n,)).float(),
        ],
        dim=1,
    )


def double(x: Tensor | dict[str, Tensor]) -> Tensor | dict[str, Tensor]:
    return {k: v.double() for k, v in x.items()} if isinstance(x, dict) else x.double()


def as_tuple(features: Any) -> tuple[Tensor, ...]:
    """The features as a tuple (hard sharing without a trunk hands over the raw inputs, a
    dict for several)."""
    if isinstance(features, dict):
        return tuple(features.values())
    return (features,) if isinstance(features, Tensor) else tuple(features)


def hyperparameter_names(name: str) -> list[str]:
    cls = ARCHITECTURES.get(name)
    return [p for p in inspect.signature(cls.__init__).parameters if p not in BUILT]


def finite(model: MultiTaskModel) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# --- shapes for every input kind and split; refusals ---------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", NAMES)
def test_outputs_have_the_right_shape_or_the_split_is_refused(
    name: str, kind: str, split: int | None
) -> None:
    model_spec = spec(name, kind, split)
    assert len(build_backbone(model_spec).block_names()) == DEPTH
    problem = ARCHITECTURES.get(name).split_problem(shared_count(split), DEPTH)
    if problem is not None:
        with pytest.raises(ValueError, match=r"model\.shared_depth") as refused:
            build_model(model_spec)
        assert name in str(refused.value) and problem in str(refused.value)
        return
    model = build_model(model_spec)
    assert isinstance(model, ARCHITECTURES.get(name))
    assert model.shared_depth == shared_count(split)
    outputs, features = model.forward_with_features(batch(kind, 5))
    assert list(outputs) == [t.name for t in TASKS]
    assert {t: tuple(o.shape) for t, o in outputs.items()} == {
        t: (5, n) for t, n in N_OUTPUTS.items()
    }
    assert all(bool(torch.isfinite(o).all()) for o in outputs.values())
    if shares(name, split):  # what the gradient methods back-propagate through
        features = as_tuple(features)
        assert features and all(isinstance(f, Tensor) and f.requires_grad for f in features)


# --- the whole model is trained ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind", "split"), combos())
def test_every_parameter_gets_a_finite_gradient(name: str, kind: str, split: int | None) -> None:
    model = build_model(spec(name, kind, split))
    outputs = model(batch(kind, 6))
    sum(model.task_loss_terms(outputs, labels(6))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    infinite = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p.grad).all())]
    assert infinite == []
    # the gradients are not all zero (the loss reaches the parameters)
    assert any(bool(p.grad.abs().sum() > 0) for p in model.parameters())


# --- the features are a cut ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind", "split"), combos(sharing=True))
def test_features_are_a_cut_between_shared_and_task_parameters(
    name: str, kind: str, split: int | None
) -> None:
    """Summing the per-task Jacobian torchjd computes through the features gives exactly the
    gradient of the summed loss: the gradient methods see every shared parameter, every path
    through the features once, and no path around them."""
    model = build_model(spec(name, kind, split)).double()
    x, y = double(batch(kind, 6)), labels(6).double()

    sum(model.task_loss_terms(model(x), y)).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    outputs, features = model.forward_with_features(x)
    shared = model.shared_parameters()
    assert shared
    mtl_backward(
        model.task_loss_terms(outputs, y),
        features=as_tuple(features),
        shared_params=shared,
        parallel_chunk_size=1,
    )
    jac_to_grad(shared, Sum())
    actual = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    assert sorted(actual) == sorted(expected)
    for n, grad in expected.items():
        torch.testing.assert_close(actual[n], grad, rtol=1e-7, atol=1e-10, msg=n)


# --- the shared parameters are the ones upstream of the features ---------------------------------


@pytest.mark.parametrize(("name", "kind", "split"), combos())
def test_shared_parameters_are_exactly_those_upstream_of_the_features(
    name: str, kind: str, split: int | None
) -> None:
    model = build_model(spec(name, kind, split))
    _, features = model.forward_with_features(batch(kind, 4))
    features = [f for f in as_tuple(features) if f.requires_grad]
    params = dict(model.named_parameters())
    if features:
        grads = torch.autograd.grad(
            sum(f.sum() for f in features), list(params.values()), allow_unused=True
        )
        upstream = {n for n, g in zip(params, grads, strict=True) if g is not None}
    else:
        upstream = set()
    ids = {id(p) for p in model.shared_parameters()}
    declared = {n for n, p in params.items() if id(p) in ids}
    assert declared == upstream
    assert len(ids) == len(model.shared_parameters())  # none listed twice
    assert bool(declared) == shares(name, split)


def test_hard_sharing_without_a_trunk_shares_nothing_and_refuses_gradient_methods() -> None:
    assert not ARCHITECTURES.get("hps").shares_parameters(0, DEPTH)
    model = build_model(spec("hps", "cnn", 0))
    assert model.shared_parameters() == []
    with pytest.raises(ValueError, match=r"shared_depth"):
        Trainer(model, build_weighting("upgrad", model.task_names), epochs=1)


# --- training ------------------------------------------------------------------------------------

TOY_TASKS = (TaskSpec("sum", "regression"), TaskSpec("sign", "binary"))


def toy_table(n: int) -> tuple[Tensor, Tensor]:
    """5 standard normal columns; "sum" is x0 - 2 x1, "sign" whether x2 + x3 > 0."""
    x = torch.randn(n, 5)
    y = torch.stack([x[:, 0] - 2 * x[:, 1], (x[:, 2] + x[:, 3] > 0).float()], dim=1)
    return x, y


@pytest.mark.parametrize("name", NAMES)
def test_loss_falls_on_a_two_task_toy(name: str) -> None:
    toy = ModelSpec(
        tasks=TOY_TASKS,
        backbone="auto",
        backbone_args={"width": 4, "depth": DEPTH},
        shared_depth=first_accepted_split(name),
        head_hidden=16,
        architecture=name,
        architecture_args=dict(ARGS.get(name, {})),
        inputs=(TABLE,),
    )
    model = build_model(toy)
    x, y = toy_table(128)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = model.task_losses(model(x), y)
    for _ in range(40):
        optimiser.zero_grad()
        model.task_losses(model(x), y).sum().backward()
        optimiser.step()
    with torch.no_grad():
        after = model.task_losses(model(x), y)
    assert float(after.sum()) < 0.7 * float(before.sum())
    assert bool((after < before).all()), (before, after)


# --- checkpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cnn", "fusion"])
@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_gives_identical_outputs(
    name: str, kind: str, tmp_path: Path
) -> None:
    model_spec = spec(name, kind, first_accepted_split(name))
    model = build_model(model_spec)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch(kind, 6), labels(6)
    for _ in range(2):  # move weights and batch-norm statistics away from their start
        optimiser.zero_grad()
        model.task_losses(model(x), y).sum().backward()
        optimiser.step()
    model.eval()

    save_checkpoint(model, model_spec, tmp_path / "ckpt")
    loaded, loaded_spec = load_checkpoint(
        tmp_path / "ckpt" / WEIGHTS_FILE, tmp_path / "ckpt" / SPEC_FILE
    )
    assert loaded_spec == model_spec
    assert loaded_spec.architecture == name
    assert loaded_spec.architecture_args == ARGS.get(name, {})
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.hyperparameters() == model.hyperparameters()

    x = batch(kind, 5)
    with torch.no_grad():
        expected, actual = model(x), loaded(x)
        fresh = build_model(model_spec).eval()(x)
    for task in N_OUTPUTS:
        assert torch.equal(actual[task], expected[task]), task
    assert not torch.allclose(fresh["a"], expected["a"])  # the weights did load


# --- gradient methods and missing labels ---------------------------------------------------------


def batches_with_missing_labels(kind: str) -> list[tuple[Any, Tensor]]:
    """Three batches: all labelled; NaN scattered in every column; task "b" unlabelled."""
    scattered = labels(6)
    scattered[[0, 3], 0] = NAN
    scattered[[1, 2, 5], 1] = NAN
    scattered[4, 2] = NAN
    scattered[[0, 1], 3] = NAN
    unlabelled = labels(6)
    unlabelled[:, 1] = NAN
    return [(batch(kind, 6), labels(6)), (batch(kind, 6), scattered), (batch(kind, 6), unlabelled)]


@pytest.mark.parametrize("method", ["equal", "upgrad"])
@pytest.mark.parametrize("kind", ["cnn", "fusion"])
@pytest.mark.parametrize("name", NAMES)
def test_trains_with_a_weighting_method_and_missing_labels(
    name: str, kind: str, method: str
) -> None:
    model = build_model(spec(name, kind, first_accepted_split(name)))
    start = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, build_weighting(method, model.task_names), epochs=1, lr=1e-2)
    stats = trainer.train_epoch(batches_with_missing_labels(kind))

    assert torch.isfinite(torch.tensor(stats.loss))
    assert stats.task_losses.shape == (len(TASKS),)
    assert bool(torch.isfinite(stats.task_losses).all())
    assert finite(model)
    assert any(not torch.equal(p, s) for p, s in zip(model.parameters(), start, strict=True))
    if method == "upgrad":
        assert stats.weights is not None and stats.weights.shape == (len(TASKS),)
        assert bool(torch.isfinite(stats.weights).all())
        assert stats.gradient_cosine is not None
        assert stats.gradient_cosine.shape == (len(TASKS), len(TASKS))


@pytest.mark.parametrize("name", NAMES)
def test_a_task_without_labels_gets_a_zero_loss_and_no_nan(name: str) -> None:
    model = build_model(spec(name, "mlp", first_accepted_split(name)))
    y = labels(6)
    y[:, 1] = NAN
    outputs, features = model.forward_with_features(batch("mlp", 6))
    losses = model.task_loss_terms(outputs, y)
    assert float(losses[1].detach()) == 0.0
    assert all(bool(torch.isfinite(loss)) for loss in losses)
    result = build_weighting("upgrad", model.task_names).backward(
        losses, features, model.shared_parameters()
    )
    assert result.weights is not None and bool(torch.isfinite(result.weights).all())
    for n, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), n
    assert all(bool((p.grad == 0).all()) for p in model.head("b").parameters())


# --- gates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "split"),
    [c for c in combos() if c[1] in ("cnn", "fusion") and c[2] in (0, 1)],
)
def test_gate_weights_are_each_tasks_distribution_over_the_experts(
    name: str, kind: str, split: int
) -> None:
    model = build_model(spec(name, kind, split))
    model(batch(kind, 6))
    experts = model.expert_names()
    gates = model.gate_weights()
    if not experts:
        assert gates is None
        return
    assert len(set(experts)) == len(experts)
    assert gates is not None and list(gates) == model.task_names
    for task, weights in gates.items():
        assert weights.shape == (len(experts),), task
        assert not weights.requires_grad
        assert bool((weights >= 0).all()), (task, weights)
        torch.testing.assert_close(float(weights.sum()), 1.0, rtol=0, atol=1e-6)
        # experts named after a task (CGC/PLE's own experts): used by that task only
        own = [i for i, e in enumerate(experts) if e.startswith(f"{task} ")]
        others = [
            i
            for i, e in enumerate(experts)
            if i not in own and any(e.startswith(f"{t} ") for t in model.task_names)
        ]
        assert bool((weights[own] > 0).all()), (task, weights)
        assert bool((weights[others] == 0).all()), (task, weights)


def test_cgc_and_ple_name_shared_experts_then_each_tasks_own() -> None:
    for name in ("cgc", "ple"):
        model = build_model(spec(name, "mlp", 1, shared_experts=2, task_experts=1))
        assert model.expert_names() == ["shared 1", "shared 2", "a 1", "b 1", "type 1", "d 1"]


def saturate(model: MultiTaskModel, bias: list[float]) -> None:
    """Set every task's DSelect-k decisions to ``bias`` (independent of the input): beyond
    +-gamma/2 the smooth step is exactly 0 or 1."""
    assert isinstance(model, DSelectK)
    with torch.no_grad():
        for task in model.task_names:
            decisions = model.gates[task_key(task)].decisions
            decisions.weight.zero_()
            decisions.bias.copy_(torch.tensor(bias))


def test_dselect_k_with_settled_decisions_selects_exactly_k_experts() -> None:
    model = build_model(spec("dselect_k", "mlp", 1, experts=4, k=1, gamma=1.0))
    saturate(model, [1.0, -1.0])  # binary code 01 (bit 0 first): expert 2
    model(batch("mlp", 5))
    gates = model.gate_weights()
    assert gates is not None
    for weights in gates.values():
        assert torch.equal(weights, torch.tensor([0.0, 1.0, 0.0, 0.0]))

    model = build_model(spec("dselect_k", "mlp", 1, experts=4, k=2, gamma=1.0))
    saturate(model, [-1.0, -1.0, 1.0, 1.0])  # selector 1: expert 1, selector 2: expert 4
    with torch.no_grad():
        for task in model.task_names:
            model.gates[task_key(task)].selector_logits.weight.zero_()
            model.gates[task_key(task)].selector_logits.bias.zero_()
    model(batch("mlp", 5))
    gates = model.gate_weights()
    assert gates is not None
    for weights in gates.values():
        assert torch.equal(weights, torch.tensor([0.5, 0.0, 0.0, 0.5]))


def mean_largest_gate(model: MultiTaskModel, x: Tensor) -> float:
    """Each sample's largest gate weight, averaged over samples and tasks (one sample per
    forward: ``gate_weights`` is then that sample's own)."""
    largest = []
    with torch.no_grad():
        for i in range(len(x)):
            model(x[i : i + 1])
            gates = model.gate_weights()
            assert gates is not None
            largest += [float(w.max()) for w in gates.values()]
    return sum(largest) / len(largest)


def test_dselect_k_with_k_1_concentrates_each_samples_gate_as_it_trains() -> None:
    """Held on ten seeds: from 0.40-0.78 at the start to 0.74-0.96 after 40 steps."""
    toy = ModelSpec(
        tasks=TOY_TASKS,
        backbone="auto",
        backbone_args={"width": 4, "depth": DEPTH},
        shared_depth=1,
        head_hidden=16,
        architecture="dselect_k",
        architecture_args={"experts": 4, "k": 1},
        inputs=(TABLE,),
    )
    model = build_model(toy)
    x, y = toy_table(128)
    before = mean_largest_gate(model, x[:32])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimiser.zero_grad()
        model.task_losses(model(x), y).sum().backward()
        optimiser.step()
    after = mean_largest_gate(model, x[:32])
    assert after > 0.7 and after > before + 0.1, (before, after)


def test_dselect_k_gate_sums_to_one_even_on_an_unused_code() -> None:
    """With experts not a power of 2, a selector settled on a code past the last expert
    still selects one (code c is expert c mod experts), never nothing."""
    model = build_model(spec("dselect_k", "mlp", 1, experts=3, k=1, gamma=1.0))
    saturate(model, [1.0, 1.0])  # binary code 11: a fourth expert, which does not exist
    model(batch("mlp", 5))
    gates = model.gate_weights()
    assert gates is not None
    for weights in gates.values():
        torch.testing.assert_close(float(weights.sum()), 1.0)
        assert weights.tolist() == pytest.approx([1.0, 0.0, 0.0])  # code 3 -> expert 3 mod 3


# --- hyperparameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_come_from_the_signature_and_echo_in_repr(name: str) -> None:
    model = build_model(spec(name, "mlp", first_accepted_split(name)))
    given = ARGS.get(name, {})
    declared = hyperparameter_names(name)
    assert set(given) <= set(declared)
    assert sorted(model.hyperparameters()) == sorted(declared)
    for key, value in given.items():
        assert model.hyperparameters()[key] == value
    text = repr(model)
    assert f"shared_depth={model.shared_depth}" in text
    for key, value in model.hyperparameters().items():
        assert f"{key}={value!r}" in text


INVALID = [  # (architecture, arguments, what the message starts with)
    ("mmoe", {"experts": 0}, r"experts must be >= 1, got 0"),
    ("dselect_k", {"experts": 0, "k": 1}, r"k must be in 1\.\.experts \(0\), got 1"),
    ("dselect_k", {"experts": 2, "k": 3}, r"k must be in 1\.\.experts \(2\), got 3"),
    ("dselect_k", {"experts": 2, "k": 0}, r"k must be in 1\.\.experts \(2\), got 0"),
    ("dselect_k", {"gamma": 0.0}, r"gamma must be > 0"),
    ("cgc", {"shared_experts": 0}, r"shared_experts must be >= 1"),
    ("cgc", {"task_experts": 0}, r"task_experts must be >= 1"),
    ("ple", {"shared_experts": 0}, r"shared_experts must be >= 1"),
    ("ple", {"task_experts": 0}, r"task_experts must be >= 1"),
    ("cross_stitch", {"keep": 0.0}, r"keep must be in \(0, 1\], got 0\.0"),
    ("cross_stitch", {"keep": 1.5}, r"keep must be in \(0, 1\], got 1\.5"),
]


@pytest.mark.parametrize(("name", "args", "argument"), INVALID)
def test_invalid_hyperparameters_raise_naming_the_argument(
    name: str, args: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        build_model(spec(name, "mlp", 1, **args))
