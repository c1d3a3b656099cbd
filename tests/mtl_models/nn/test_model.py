"""model: trunk/branch split, per-task outputs, masked losses, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtl_models.nn.architectures import HardSharing
from mtl_models.nn.backbones import ConvNet
from mtl_models.nn.checkpoint import (
    SPEC_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from mtl_models.nn.heads import Decoded
from mtl_models.nn.model import ModelSpec, build_model
from mtl_models.tasks import TaskSpec

NAN = float("nan")
TASKS = (
    TaskSpec("cls", "classification", n_classes=3),
    TaskSpec("bin", "binary"),
    TaskSpec("ord", "ordinal", n_classes=6),
    TaskSpec("reg", "regression", target_mean=5.0, target_std=2.0),
)
N_OUTPUTS = {"cls": 3, "bin": 1, "ord": 5, "reg": 1}
DEPTH = 3


def tiny_model(shared_depth: int | None = None, tasks: tuple[TaskSpec, ...] = TASKS):
    backbone = ConvNet(in_channels=1, width=4, depth=DEPTH, pool_size=1)
    return HardSharing(tasks, backbone, shared_depth=shared_depth, head_hidden=8)


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8)


@pytest.mark.parametrize("shared_depth", [0, 2, DEPTH, None])
def test_forward_gives_one_output_per_task(shared_depth: int | None) -> None:
    model = tiny_model(shared_depth)
    outputs = model(images(5))
    assert list(outputs) == ["cls", "bin", "ord", "reg"]
    assert {name: tuple(out.shape) for name, out in outputs.items()} == {
        name: (5, n) for name, n in N_OUTPUTS.items()
    }
    expected_shared = DEPTH if shared_depth is None else shared_depth
    assert model.shared_depth == expected_shared
    assert len(model.trunk) == expected_shared
    if expected_shared == DEPTH:
        assert model.branches is None
    else:
        assert model.branches is not None
        assert sorted(model.branches) == sorted(N_OUTPUTS)
        assert all(len(b) == DEPTH - expected_shared for b in model.branches.values())


def test_branches_are_per_task() -> None:
    model = tiny_model(shared_depth=1)
    assert model.branches is not None
    cls_params = list(model.branches["cls"].parameters())
    bin_params = list(model.branches["bin"].parameters())
    assert {p.data_ptr() for p in cls_params}.isdisjoint(p.data_ptr() for p in bin_params)
    # independently initialised, not copies
    assert not torch.equal(cls_params[0], bin_params[0])

    model.eval()
    x = images()
    before = model(x)
    with torch.no_grad():
        for p in model.branches["cls"].parameters():
            p.add_(0.5)
    after = model(x)
    assert not torch.allclose(before["cls"], after["cls"])
    for name in ("bin", "ord", "reg"):
        torch.testing.assert_close(before[name], after[name], rtol=0, atol=0)


def test_trunk_is_shared_by_all_tasks() -> None:
    model = tiny_model(shared_depth=1).eval()
    x = images()
    before = model(x)
    with torch.no_grad():
        for p in model.trunk.parameters():
            p.mul_(-1.5)
    after = model(x)
    for name in N_OUTPUTS:
        assert not torch.allclose(before[name], after[name]), name


@pytest.mark.parametrize("shared_depth", [-1, DEPTH + 1])
def test_invalid_shared_depth_raises(shared_depth: int) -> None:
    with pytest.raises(ValueError, match=rf"shared_depth must be in 0\.\.{DEPTH}"):
        tiny_model(shared_depth)


def test_no_tasks_or_duplicate_names_raise() -> None:
    with pytest.raises(ValueError, match="at least one task"):
        tiny_model(tasks=())
    with pytest.raises(ValueError, match="unique"):
        tiny_model(tasks=(TaskSpec("a", "binary"), TaskSpec("a", "regression")))


def test_decode_returns_one_decoded_per_task() -> None:
    model = tiny_model().eval()
    decoded = model.decode(model(images(3)))
    assert list(decoded) == list(N_OUTPUTS)
    assert all(isinstance(d, Decoded) and d.prediction.shape == (3,) for d in decoded.values())
    assert decoded["reg"].proba is None
    assert decoded["ord"].proba is not None and decoded["ord"].proba.shape == (3, 6)


def test_task_losses_with_every_label_present_equal_head_losses() -> None:
    model = tiny_model()
    outputs = model(images(3))
    labels = torch.tensor([[0.0, 1.0, 5.0, 4.0], [2.0, 0.0, 0.0, 7.5], [1.0, 1.0, 3.0, 5.0]])
    losses = model.task_losses(outputs, labels)
    assert losses.shape == (4,)
    for t, name in enumerate(model.task_names):
        torch.testing.assert_close(losses[t], model.head(name).loss(outputs[name], labels[:, t]))


def test_task_losses_use_only_labelled_rows() -> None:
    model = tiny_model()
    outputs = model(images(3))
    labels = torch.tensor([[0.0, 1.0, 5.0, 4.0], [NAN, NAN, NAN, NAN], [1.0, 0.0, 3.0, 5.0]])
    losses = model.task_losses(outputs, labels)
    assert bool(torch.isfinite(losses).all())
    keep = torch.tensor([0, 2])
    for t, name in enumerate(model.task_names):
        expected = model.head(name).loss(outputs[name][keep], labels[keep, t])
        torch.testing.assert_close(losses[t], expected)


def test_outputs_of_a_masked_row_do_not_change_the_loss_or_get_gradient() -> None:
    model = tiny_model()
    outputs = {name: out.detach().requires_grad_(True) for name, out in model(images(3)).items()}
    labels = torch.tensor([[0.0, 1.0, 5.0, 4.0], [NAN, NAN, NAN, NAN], [1.0, 0.0, 3.0, 5.0]])
    losses = model.task_losses(outputs, labels)
    losses.sum().backward()

    changed = {name: out.detach().clone() for name, out in outputs.items()}
    for out in changed.values():
        out[1] = 1e3  # garbage on the unlabelled row
    torch.testing.assert_close(model.task_losses(changed, labels), losses.detach())
    for name, out in outputs.items():
        assert out.grad is not None
        assert bool((out.grad[1] == 0).all()), name
        assert bool((out.grad[[0, 2]] != 0).any()), name


def test_task_with_no_label_contributes_zero_and_a_zero_gradient() -> None:
    model = tiny_model(shared_depth=1)
    labels = torch.tensor([[0.0, NAN, 5.0, 4.0], [2.0, NAN, 0.0, 7.5]])
    losses = model.task_losses(model(images(2)), labels)
    assert float(losses[1].detach()) == 0.0
    assert bool((losses[[0, 2, 3]] > 0).all())
    losses.sum().backward()
    assert model.branches is not None
    silent = [*model.head("bin").parameters(), *model.branches["bin"].parameters()]
    for p in silent:
        assert p.grad is not None  # still connected to the graph
        assert bool((p.grad == 0).all())
    assert any(bool(p.grad.abs().sum() > 0) for p in model.head("cls").parameters())


def spec(**overrides: object) -> ModelSpec:
    base = dict(
        tasks=TASKS,
        backbone="cnn",
        backbone_args={"width": 4, "depth": DEPTH, "pool_size": 1},
        shared_depth=1,
        head_hidden=8,
        image_size=8,
    )
    return ModelSpec(**(base | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", r"model.pt: not readable weights \((RuntimeError|OSError): "),
        ("spec_garbage", r"model_spec.json: not a model spec \(JSONDecodeError: Expecting"),
        ("spec_empty_object", r"model_spec.json: not a model spec \(KeyError: 'tasks'\)"),
        ("other_model", r"model.pt: does not fit the model model_spec.json describes"),
        ("no_weights", r"model.pt: not found$"),
    ],
)
def test_a_damaged_checkpoint_names_the_file(tmp_path: Path, damage: str, message: str) -> None:
    """A truncated model.pt or an edited model_spec.json: a CheckpointError naming the file
    (torch's and json's own errors name neither)."""
    folder = tmp_path / "ckpt"
    save_checkpoint(build_model(spec()), spec(), folder)
    weights, spec_file = folder / WEIGHTS_FILE, folder / SPEC_FILE
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-200])
    elif damage == "spec_garbage":
        spec_file.write_text("{")
    elif damage == "spec_empty_object":
        spec_file.write_text("{}")
    elif damage == "other_model":
        torch.save(build_model(spec(head_hidden=4)).state_dict(), weights)
    else:
        weights.unlink()
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(weights, spec_file)


def test_model_spec_dict_round_trip_is_json() -> None:
    original = spec()
    data = json.loads(json.dumps(original.to_dict()))
    assert data["tasks"][1]["kind"] == "binary"
    assert ModelSpec.from_dict(data) == original


def test_build_model_follows_spec() -> None:
    model = build_model(spec(channels=3))
    assert model.shared_depth == 1
    assert model(torch.rand(2, 3, 8, 8))["ord"].shape == (2, 5)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model_spec = spec()
    model = build_model(model_spec)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    labels = torch.tensor([[0.0, 1.0, 5.0, 4.0], [2.0, 0.0, 0.0, 7.5], [1.0, NAN, 3.0, 5.0]])
    for _ in range(3):  # moves weights and batch-norm statistics away from their init
        optimiser.zero_grad()
        model.task_losses(model(images(3)), labels).sum().backward()
        optimiser.step()
    model.eval()

    save_checkpoint(model, model_spec, tmp_path / "ckpt")
    loaded, loaded_spec = load_checkpoint(
        tmp_path / "ckpt" / WEIGHTS_FILE, tmp_path / "ckpt" / SPEC_FILE
    )
    assert loaded_spec == model_spec
    assert not loaded.training

    x = images(5)
    expected, actual = model(x), loaded(x)
    for name in N_OUTPUTS:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0)
    fresh = build_model(model_spec).eval()
    assert not torch.allclose(fresh(x)["cls"], expected["cls"])
