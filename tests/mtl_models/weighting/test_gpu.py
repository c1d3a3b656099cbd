"""Gradient aggregators on a CUDA GPU (skipped without one): the step is the CPU's step.

The weights are computed from the Gramian on the CPU and sent back (``_weights``); these
tests check that a GPU step weighs, and moves the shared parameters, as the same step on the
CPU does, and leaves everything on the GPU. `bash benchmarks/gpu.sh` runs them on a lent GPU.
"""

from __future__ import annotations

import copy

import pytest
import torch

from mtl_models.weighting import build_weighting
from tests.mtl_models.weighting.test_feature_level import _batch, _model
from tests.mtl_models.weighting.test_weighting import MIXED_LABELS, MIXED_NAMES

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("level", ["parameters", "features"])
@pytest.mark.parametrize("name", ["upgrad", "mgda", "pcgrad", "gradvac"])
def test_a_gpu_step_equals_the_cpu_step(name: str, level: str) -> None:
    cpu_model = _model()
    gpu_model = copy.deepcopy(cpu_model).cuda()
    grads, weights = {}, {}
    for device, model in (("cpu", cpu_model), ("cuda", gpu_model)):
        method = build_weighting(name, MIXED_NAMES, level=level).double()
        outputs, features = model.forward_with_features(_batch().to(device))
        torch.manual_seed(7)  # PCGrad draws a task order
        step = method.backward(
            model.task_loss_terms(outputs, MIXED_LABELS.to(device)),
            features,
            model.shared_parameters(),
        )
        assert step.weights is not None and step.weights.device.type == device
        assert step.loss.device.type == device
        weights[device] = step.weights.cpu()
        grads[device] = [p.grad.cpu() for p in model.shared_parameters()]
        assert all(p.grad.device.type == device for p in model.shared_parameters())
    torch.testing.assert_close(weights["cuda"], weights["cpu"], rtol=1e-6, atol=1e-9)
    for got, expected in zip(grads["cuda"], grads["cpu"], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)
