"""The served forward pass on ONNX Runtime: exported when the model is logged, checked against
torch, refused with the reason (and served by torch) where the export fails or disagrees, and
chosen in the server by ``MTLFLOW_SERVE_ENGINE``."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mtl_models.nn.architectures import ARCHITECTURES
from mtl_models.nn.checkpoint import save_checkpoint
from mtl_models.nn.inference import for_inference
from mtl_models.nn.model import ModelSpec, build_model
from mtl_models.train.loaders import channels_last, model_inputs
from pipelines.serving import encode_png, log_pyfunc_model, onnx_forward
from pipelines.serving.onnx_forward import OnnxForward, serve_engine
from pipelines.serving.pyfunc import ENGINE_TAG
from tests.mtl_models.nn.test_inference import small_spec, trained_like


def small_model(architecture: str = "hps", kind: str = "cnn") -> tuple[nn.Module, ModelSpec]:
    spec = small_spec(architecture, kind)
    return trained_like(build_model(spec)), spec


def random_batch(spec: ModelSpec, n: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"image": (1, 32, 32), "tab": (3,), "sig": (2, 32)}
    return {
        i.name: channels_last(torch.randn((n, *shapes[i.name]), generator=generator))
        for i in spec.input_specs()
    }


def assert_onnx_matches_torch(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    """On a batch of a size the export never saw: the same outputs, the same predictions."""
    inputs = model_inputs(random_batch(spec, 7, seed=5))
    with torch.inference_mode():
        expected = model(inputs)
    got = OnnxForward(path, threads=1)(inputs)
    assert got.keys() == expected.keys()
    for task in expected:
        torch.testing.assert_close(got[task], expected[task], rtol=1e-4, atol=1e-4)
    decoded, wanted = model.decode(got), model.decode(expected)
    for task in expected:  # classes equal; a regression's value to float rounding
        torch.testing.assert_close(decoded[task].prediction, wanted[task].prediction)


def test_the_default_kind_of_model_exports_and_agrees_with_torch(tmp_path: Path):
    model, spec = small_model()
    fast = for_inference(model)
    path = tmp_path / "model.onnx"
    assert onnx_forward.export(fast, random_batch(spec, 2, seed=1), path) is None
    assert path.stat().st_size > 0
    assert_onnx_matches_torch(fast, spec, path)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
@pytest.mark.parametrize("kind", ["cnn", "fusion"])
def test_every_architecture_exports_and_agrees_with_torch(
    architecture: str, kind: str, tmp_path: Path
):
    model, spec = small_model(architecture, kind)
    fast = for_inference(model)
    path = tmp_path / "model.onnx"
    assert onnx_forward.export(fast, random_batch(spec, 2, seed=1), path) is None
    assert_onnx_matches_torch(fast, spec, path)


class FixedBatch(nn.Module):
    """A network whose graph cannot take any batch size: it reshapes to the example's."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": x.reshape(2, -1).sum(dim=1, keepdim=True)}


def test_a_graph_that_fixes_the_batch_size_is_refused_with_the_reason(tmp_path: Path):
    path = tmp_path / "model.onnx"
    reason = onnx_forward.export(FixedBatch().eval(), {"x": torch.randn(2, 3)}, path)
    assert reason is not None and reason.startswith("failed (")
    assert "\n" not in reason and "\x1b" not in reason  # one plain line for the warning
    assert not path.exists()


def test_outputs_that_differ_from_torch_are_refused(tmp_path: Path, monkeypatch):
    model, spec = small_model()
    monkeypatch.setattr(onnx_forward, "TOLERANCE", -1.0)  # no difference is small enough
    path = tmp_path / "model.onnx"
    reason = onnx_forward.export(for_inference(model), random_batch(spec, 2, seed=1), path)
    assert reason is not None and reason.startswith("differs from torch on 'a' by")
    assert not path.exists()


def test_the_server_engine_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("MTLFLOW_SERVE_ENGINE", raising=False)
    assert serve_engine() == "onnx"
    monkeypatch.setenv("MTLFLOW_SERVE_ENGINE", "torch")
    assert serve_engine() == "torch"
    monkeypatch.setenv("MTLFLOW_SERVE_ENGINE", "tensorrt")
    with pytest.raises(ValueError, match="MTLFLOW_SERVE_ENGINE='tensorrt': expected one of onnx"):
        serve_engine()


def use_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh SQLite MLflow store in ``root``, with an experiment of its own."""
    monkeypatch.chdir(root)  # MLflow puts artifacts under ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_experiment("onnx")


def logged_files(model_uri: str, scratch: Path) -> set[str]:
    """Names of the files logged with the model's artifacts (weights, spec, export)."""
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(scratch / "dl")))
    return {p.name for p in (local / "artifacts").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_logged_model_carries_its_export_and_serves_the_same_with_either_engine(
    tmp_path: Path, monkeypatch
):
    use_store(tmp_path, monkeypatch)
    model, spec = small_model()
    save_checkpoint(model, spec, tmp_path / "ckpt")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (9, 32, 32, 1), dtype=np.uint8)
    request = pd.DataFrame({"image": [encode_png(img) for img in images]})
    with mlflow.start_run() as run:
        info = log_pyfunc_model(tmp_path / "ckpt", images[:2])
    assert mlflow.get_run(run.info.run_id).data.tags[ENGINE_TAG] == "onnxruntime"
    assert logged_files(info.model_uri, tmp_path) >= {"model.pt", "model_spec.json", "model.onnx"}

    served = mlflow.pyfunc.load_model(info.model_uri)
    assert isinstance(served.unwrap_python_model().predictor.forward, OnnxForward)
    monkeypatch.setenv("MTLFLOW_SERVE_ENGINE", "torch")
    by_torch = mlflow.pyfunc.load_model(info.model_uri)
    assert not isinstance(by_torch.unwrap_python_model().predictor.forward, OnnxForward)
    got, expected = served.predict(request), by_torch.predict(request)
    for column in expected.columns:
        if column.endswith("_proba"):
            np.testing.assert_allclose(np.stack(got[column]), np.stack(expected[column]), atol=1e-5)
        else:
            np.testing.assert_allclose(got[column], expected[column], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_model_whose_export_fails_is_logged_for_torch_with_a_warning(tmp_path: Path, monkeypatch):
    use_store(tmp_path, monkeypatch)
    model, spec = small_model()
    save_checkpoint(model, spec, tmp_path / "ckpt")
    monkeypatch.setattr(onnx_forward, "TOLERANCE", -1.0)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
    with (
        mlflow.start_run() as run,
        pytest.warns(UserWarning, match="serving this model with torch"),
    ):
        info = log_pyfunc_model(tmp_path / "ckpt", images)
    assert mlflow.get_run(run.info.run_id).data.tags[ENGINE_TAG] == "torch"
    assert "model.onnx" not in logged_files(info.model_uri, tmp_path)
    served = mlflow.pyfunc.load_model(info.model_uri)
    assert not isinstance(served.unwrap_python_model().predictor.forward, OnnxForward)
    assert len(served.predict(pd.DataFrame({"image": [encode_png(images[0])]}))) == 1
