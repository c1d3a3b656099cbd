"""What the served model sets up in a `mlflow models serve` process, and only there."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from mlflow.pyfunc import scoring_server

from pipelines.serving import pyfunc


@pytest.fixture
def load_context(monkeypatch: pytest.MonkeyPatch):
    """``MultiTaskPyfunc.load_context`` on a stand-in checkpoint; torch's threads restored."""
    monkeypatch.setattr(
        pyfunc, "Predictor", lambda weights, spec: SimpleNamespace(predict_columns=None)
    )
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
