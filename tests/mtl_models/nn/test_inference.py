"""``for_inference``: a copy with batch norms folded and channels-last weights predicts what
the trained model predicts, for every architecture, input kind and a zoo backbone, and the
trained model is left as it was."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from mtl_models.inputs import ImageInput
from mtl_models.inputs.features import FeatureInput
from mtl_models.inputs.signal import SignalInput
from mtl_models.nn.architectures import ARCHITECTURES
from mtl_models.nn.backbones import BACKBONES
from mtl_models.nn.inference import for_inference
from mtl_models.nn.model import ModelSpec, build_model
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import channels_last

TASKS = (
    TaskSpec("a", "classification", 3),
    TaskSpec("b", "regression"),
    TaskSpec("c", "ordinal", 4),
)
IMAGE = ImageInput("image", 32, 1)
TABLE = FeatureInput("tab", numeric=("x0", "x1", "x2"), mean=(0.0,) * 3, std=(1.0,) * 3)
SIGNAL = SignalInput("sig", ("c1", "c2"), 32)
# architecture -> small non-default hyperparameters (the rest are built with defaults)
ARGS: dict[str, dict[str, Any]] = {
    "mmoe": {"experts": 3},
    "dselect_k": {"experts": 3, "k": 2, "gamma": 0.5},
    "cgc": {"shared_experts": 2, "task_experts": 1},
    "ple": {"shared_experts": 1, "task_experts": 2},
}


def small_spec(architecture: str = "hps", kind: str = "cnn") -> ModelSpec:
    """A small model of ``architecture`` on an image (``cnn``) or on a table, a signal and an
    image together (``fusion``)."""
    return ModelSpec(
        tasks=TASKS,
        backbone=kind,
        backbone_args={"width": 4, "depth": 3},
        shared_depth=1,
        head_hidden=8,
        inputs=(IMAGE,) if kind == "cnn" else (TABLE, SIGNAL, IMAGE),
        architecture=architecture,
        architecture_args=ARGS.get(architecture, {}),
    )


def trained_like(model: nn.Module) -> nn.Module:
    """Running statistics and affine terms far from their initial values, as after training,
    so that folding them changes the convolutions' weights."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) * 3 + 0.1)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))
    return model.eval()


def batch(inputs: tuple[Any, ...], n: int = 5) -> torch.Tensor | dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    shapes = {"image": (n, 1, 32, 32), "tab": (n, 3), "sig": (n, 2, 32)}
    tensors = {i.name: torch.randn(shapes[i.name], generator=generator) for i in inputs}
    return next(iter(tensors.values())) if len(tensors) == 1 else tensors


def assert_same_predictions(model: nn.Module, inputs: torch.Tensor | dict[str, torch.Tensor]):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    with torch.inference_mode():
        expected, got = model(inputs), fast(channels_last(inputs))
    assert expected.keys() == got.keys()
    for task in expected:
        torch.testing.assert_close(got[task], expected[task], rtol=1e-4, atol=1e-4)
    after = model.state_dict()  # the trained model is untouched
    assert all(torch.equal(before[k], after[k]) for k in before)
    return fast


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
@pytest.mark.parametrize("kind", ["cnn", "fusion"])
def test_every_architecture_predicts_the_same_after_folding(architecture: str, kind: str):
    spec = small_spec(architecture, kind)
    model = trained_like(build_model(spec))
    fast = assert_same_predictions(model, batch(spec.input_specs()))
    # every convolution's norm (images, signals) is folded: none is left in the copy
    assert batch_norms(model) > 0
    assert batch_norms(fast) == 0


def test_a_zoo_backbone_predicts_the_same_in_channels_last():
    name = "timm/resnet18"
    spec = ModelSpec(
        tasks=TASKS,
        backbone=name,
        backbone_args=BACKBONES.get(name).recorded_args(name, {}),
        shared_depth="layer4",
        head_hidden=8,
        inputs=(IMAGE,),
    )
    assert_same_predictions(trained_like(build_model(spec)), batch((IMAGE,)))
