"""What the served model sets up in a `mlflow models serve` process, and only there."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from mlflow.pyfunc import scoring_server

from pipelines.serving import pyfunc


def stand_in_predictor(weights, spec, onnx_file=None) -> SimpleNamespace:
    """What ``load_context`` builds, without a checkpoint: it keeps the export it was given."""
    return SimpleNamespace(predict_columns=None, onnx_file=onnx_file)


@pytest.fixture
def load_context(monkeypatch: pytest.MonkeyPatch):
    """``MultiTaskPyfunc.load_context`` on a stand-in checkpoint; torch's threads restored."""
    monkeypatch.setattr(pyfunc, "Predictor", stand_in_predictor)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MTLFLOW_SERVE_TORCH_THREADS", raising=False)
    before = torch.get_num_threads()
    context = SimpleNamespace(artifacts={"weights": "model.pt", "spec": "model_spec.json"})
    yield lambda: pyfunc.MultiTaskPyfunc().load_context(context)
    torch.set_num_threads(before)


def test_a_server_process_runs_torch_on_one_thread_unless_told(load_context, monkeypatch):
    monkeypatch.setenv(scoring_server._SERVER_MODEL_PATH, "/nowhere")
    torch.set_num_threads(2)
    load_context()
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("MTLFLOW_SERVE_TORCH_THREADS", "2")
    load_context()
    assert torch.get_num_threads() == 2


def test_the_forward_runs_on_the_logged_export_unless_the_engine_is_torch(monkeypatch):
    monkeypatch.setattr(pyfunc, "Predictor", stand_in_predictor)
    artifacts = {"weights": "model.pt", "spec": "model_spec.json", "onnx": "model.onnx"}
    model = pyfunc.MultiTaskPyfunc()
    monkeypatch.delenv("MTLFLOW_SERVE_ENGINE", raising=False)
    model.load_context(SimpleNamespace(artifacts=artifacts))
    assert str(model.predictor.onnx_file) == "model.onnx"
    monkeypatch.setenv("MTLFLOW_SERVE_ENGINE", "torch")
    model.load_context(SimpleNamespace(artifacts=artifacts))
    assert model.predictor.onnx_file is None
    # a model logged before the export existed, or whose export failed: torch
    monkeypatch.delenv("MTLFLOW_SERVE_ENGINE")
    model.load_context(SimpleNamespace(artifacts={"weights": "model.pt", "spec": "s.json"}))
    assert model.predictor.onnx_file is None


def test_an_omp_num_threads_given_to_the_server_is_kept(load_context, monkeypatch):
    monkeypatch.setenv(scoring_server._SERVER_MODEL_PATH, "/nowhere")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    load_context()
    assert torch.get_num_threads() == 2


def test_a_model_loaded_elsewhere_leaves_torch_threads_alone(load_context, monkeypatch):
    monkeypatch.delenv(scoring_server._SERVER_MODEL_PATH, raising=False)
    torch.set_num_threads(2)
    load_context()
    assert torch.get_num_threads() == 2


def test_in_the_server_predictions_leave_as_the_records_mlflow_would_write_for_the_frame(
    tmp_path, monkeypatch
):
    """In the scoring server ``predict`` skips the frame that MLflow only turns back into
    records: the JSON response is the same, byte for byte; elsewhere it is a frame."""
    import io

    import numpy as np
    import pandas as pd
    from mlflow.pyfunc.scoring_server import predictions_to_json

    from mtl_models.nn.checkpoint import SPEC_FILE, WEIGHTS_FILE, save_checkpoint
    from mtl_models.nn.model import ModelSpec, build_model
    from mtl_models.tasks import TaskSpec
    from pipelines.serving import encode_png

    tasks = (
        TaskSpec("kind", "classification", n_classes=3, classes=("a", "b", "c")),
        TaskSpec("flag", "binary"),
        TaskSpec("grade", "ordinal", n_classes=4),
        TaskSpec("size", "regression", target_mean=5.0, target_std=2.0),
    )
    spec = ModelSpec(tasks, backbone_args={"width": 4, "depth": 2}, image_size=16)
    torch.manual_seed(0)
    save_checkpoint(build_model(spec), spec, tmp_path)
    context = SimpleNamespace(
        artifacts={"weights": str(tmp_path / WEIGHTS_FILE), "spec": str(tmp_path / SPEC_FILE)}
    )
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        {"image": [encode_png(rng.integers(0, 256, (16, 16), np.uint8)) for _ in range(3)]}
    )

    def served(in_server: bool):
        if in_server:
            monkeypatch.setenv(scoring_server._SERVER_MODEL_PATH, "/nowhere")
            monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
        else:
            monkeypatch.delenv(scoring_server._SERVER_MODEL_PATH, raising=False)
        model = pyfunc.MultiTaskPyfunc()
        model.load_context(context)
        predictions = model.predict(context, rows)
        body = io.StringIO()
        predictions_to_json(predictions, body)
        return predictions, body.getvalue()

    frame, frame_json = served(in_server=False)
    records, records_json = served(in_server=True)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert isinstance(records, list) and records == frame.to_dict(orient="records")
    assert records_json == frame_json
    assert {r["kind"] for r in records} <= {"a", "b", "c"}
