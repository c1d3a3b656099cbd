"""Step options: bf16 autocast, channels-last and torch.compile train the same model as the
plain fp32 eager step (to their precision); DDP needs a weighting that supports it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_models.inputs import FeatureInput, ImageInput
from mtl_models.nn.architectures import ARCHITECTURES
from mtl_models.nn.model import ModelSpec, build_model
from mtl_models.tasks import TaskSpec
from mtl_models.train.acceleration import Acceleration
from mtl_models.train.loaders import MultiTaskDataset, make_loader
from mtl_models.train.trainer import Trainer
from mtl_models.weighting import WEIGHTINGS, build_weighting

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))


def train(spec: ModelSpec, inputs: dict, labels: np.ndarray, accel: Acceleration, epochs=2):
    torch.manual_seed(0)
    model = build_model(spec)
    trainer = Trainer(
        model, build_weighting("equal", ["a", "b"]), epochs=epochs, lr=1e-2, acceleration=accel
    )
    loader = make_loader(MultiTaskDataset(inputs, labels), 32, shuffle=True, seed=0)
    losses = [trainer.train_epoch(loader).loss for _ in range(epochs)]
    return losses, [p.detach().clone() for p in model.parameters()]


def table_data(n: int = 192):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    labels = np.stack([(x[:, 0] > 0).astype(float), x[:, 1] - x[:, 2]], axis=1)
    spec = ModelSpec(
        tasks=TASKS,
        backbone="mlp",
        backbone_args={"width": 8, "depth": 2},
        inputs=(FeatureInput("x", ("a", "b", "c", "d"), (), (0.0,) * 4, (1.0,) * 4, ()),),
    )
    return spec, {"x": x}, labels


def image_data(n: int = 96):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(n, 16, 16, 1), dtype=np.uint8)
    labels = np.stack(
        [(images.mean(axis=(1, 2, 3)) > 127).astype(float), images[:, 0, 0, 0] / 255.0], 1
    )
    spec = ModelSpec(
        tasks=TASKS,
        backbone="cnn",
        backbone_args={"width": 4, "depth": 2},
        inputs=(ImageInput("image", 16, 1),),
    )
    return spec, {"image": images}, labels


def test_bf16_autocast_trains_close_to_fp32():
    spec, inputs, labels = table_data()
    fp32, _ = train(spec, inputs, labels, Acceleration())
    bf16, _ = train(spec, inputs, labels, Acceleration(bf16=True))
    assert bf16 == pytest.approx(fp32, rel=3e-2) and bf16 != fp32  # it did run in bf16


def test_channels_last_is_the_same_model_as_contiguous():
    spec, inputs, labels = image_data()
    plain, a = train(spec, inputs, labels, Acceleration())
    nhwc, b = train(spec, inputs, labels, Acceleration(channels_last=True))
    assert nhwc == pytest.approx(plain, rel=1e-4)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-3, atol=1e-4)  # Adam magnifies rounding


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")
def test_compiled_forward_trains_the_eager_model():
    spec, inputs, labels = table_data()
    eager, a = train(spec, inputs, labels, Acceleration())
    compiled, b = train(spec, inputs, labels, Acceleration(compile=True))
    assert compiled == pytest.approx(eager, rel=1e-5)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-3, atol=1e-4)  # Adam magnifies rounding


def test_ddp_refuses_affinity():
    spec, _, _ = table_data()
    with pytest.raises(ValueError, match="affinity steps the model outside DDP"):
        Trainer(
            build_model(spec),
            build_weighting("equal", ["a", "b"]),
            epochs=1,
            affinity_every=5,
            acceleration=Acceleration(data_parallel=True),
        )


@pytest.mark.parametrize("method", sorted(WEIGHTINGS.names()))
def test_every_weighting_method_steps_under_bf16_and_channels_last(method):
    """Gradient methods combine per-task gradients of bf16 features: they must still give
    finite fp32 updates."""
    spec, inputs, labels = image_data(n=32)
    spec = ModelSpec(**{**spec.__dict__, "shared_depth": 1})
    model = build_model(spec)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(
        model,
        build_weighting(method, ["a", "b"]),
        epochs=1,
        acceleration=Acceleration(bf16=True, channels_last=True),
    )
    stats = trainer.train_epoch(make_loader(MultiTaskDataset(inputs, labels), 16, shuffle=True))
    assert np.isfinite(stats.loss)
    after = list(model.parameters())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_every_architecture_steps_under_bf16_and_channels_last_with_a_gradient_method(
    architecture,
):
    """Experts, gates, attention masks and stitches in bf16 autocast and NHWC, with UPGrad
    combining the per-task gradients of their features: finite fp32 updates."""
    spec, inputs, labels = image_data(n=32)
    spec = ModelSpec(**{**spec.__dict__, "shared_depth": 1, "architecture": architecture})
    model = build_model(spec)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(
        model,
        build_weighting("upgrad", ["a", "b"]),
        epochs=1,
        acceleration=Acceleration(bf16=True, channels_last=True),
    )
    stats = trainer.train_epoch(make_loader(MultiTaskDataset(inputs, labels), 16, shuffle=True))
    assert np.isfinite(stats.loss) and stats.weights is not None
    after = list(model.parameters())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in after)
    moved = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
    assert sum(moved) >= 0.9 * len(moved)  # (nearly) every parameter was stepped


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_takes_bf16_where_the_cpu_computes_in_it(monkeypatch, native):
    """avx512_bf16 or AMX: bf16 autocast with channels-last images; else plain fp32.
    An explicit precision wins, and a model without images stays contiguous."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu = torch.device("cpu")
    auto = Acceleration.for_device(cpu)
    assert (auto.bf16, auto.channels_last) == (native, native)
    assert auto.describe() == ("bf16, channels-last" if native else "fp32")
    assert not Acceleration.for_device(cpu, precision="fp32").bf16
    assert not Acceleration.for_device(cpu, channels_last=False).channels_last
    assert not Acceleration.for_device(cpu, images=False).channels_last
    assert not Acceleration.for_device(cpu, images=False).bf16  # a table's MLP: fp32
    assert Acceleration.for_device(cpu, precision="bf16").bf16
