"""Serving: turn request columns into the model's inputs, run it, return one column per task.

A request row holds each input raw (``requests``: each input kind decodes its own columns),
unscaled and un-encoded: the encodings fitted on the training split travel inside the model
and are applied here.

``Predictor`` is plain Python (used by tests and benchmarks); ``MultiTaskPyfunc`` wraps it
for MLflow. The model is logged with models-from-code (``pipelines/serving/entry.py``), so
nothing is pickled: the logged code, weights and spec rebuild it, and the network's ONNX
export, checked against torch when it was logged, runs its forward pass in the server
(``onnx_forward``; the run's tag ``mtlflow.serving_engine`` says which engine serves it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo

from mtl_models.nn.checkpoint import SPEC_FILE, WEIGHTS_FILE, load_checkpoint
from mtl_models.nn.inference import for_inference
from mtl_models.nn.model import ModelSpec
from mtl_models.train.loaders import Inputs, batch_inputs, channels_last, to_device, to_tensor
from pipelines.serving import onnx_forward
from pipelines.serving.batching import MicroBatcher
from pipelines.serving.guard import RequestRefused, in_scoring_server
from pipelines.serving.memory import FreedMemoryTrimmer, decode_slot
from pipelines.serving.onnx_forward import ONNX_FILE, OnnxForward, serve_engine
from pipelines.serving.requests import InvalidRequest, encode_png, raw_request, request_inputs

IMAGE_COLUMN = "image"
ENTRY_FILE = Path(__file__).with_name("entry.py")
ENGINE_TAG = "mtlflow.serving_engine"  # the run's tag: onnxruntime, or torch where export failed
PACKAGE_DIRS = [Path(__file__).parents[1], Path(__file__).parents[2] / "mtl_models"]


class Predictor:
    """A loaded checkpoint that maps inputs to a prediction frame. ``model`` is
    ``for_inference``'s copy of the trained network (batch norms folded into the
    convolutions, channels-last): the same outputs to float rounding, 20-28% less CPU per
    image at batch 8 on the default model, about 5% at batch 1 and 4. Given the model's
    ONNX export (``onnx_file``, on CPU), ONNX Runtime runs the forward pass instead
    (``onnx_forward``): 15-23% less CPU per image from decoded images to columns at batch
    8 to 1 on the default model; decoding the outputs stays the model's."""

    def __init__(
        self, weights: Path, spec_file: Path, device: str = "cpu", onnx_file: Path | None = None
    ):
        trained, self.spec = load_checkpoint(weights, spec_file)
        self.device = torch.device(device)
        self.model = for_inference(trained).to(self.device)
        # the forward pass: ONNX Runtime on the model's export where given (CPU), else torch
        self.forward: Callable[[Inputs], dict[str, torch.Tensor]] = self.model
        if onnx_file is not None and self.device.type == "cpu":
            self.forward = OnnxForward(onnx_file, threads=torch.get_num_threads())

    @classmethod
    def from_dir(cls, directory: Path) -> Predictor:
        return cls(directory / WEIGHTS_FILE, directory / SPEC_FILE)

    def export_onnx(self, example: pd.DataFrame, path: Path) -> str | None:
        """Write the network as ONNX to ``path``, checked against torch on ``example``'s
        rows (``onnx_forward.export``); None when written, else why not."""
        arrays = request_inputs(example, self.spec.input_specs())
        if len(example) == 1:  # a batch of 1 would fix the graph's batch size
            arrays = {name: np.concatenate([a, a]) for name, a in arrays.items()}
        tensors = {name: channels_last(to_tensor(a)) for name, a in arrays.items()}
        return onnx_forward.export(self.model, tensors, path)

    def predict_inputs(self, inputs: dict[str, np.ndarray], batch_size: int = 256) -> pd.DataFrame:
        """Encoded input arrays (as in the split files) -> one column per task (+ ``_proba``);
        a task with named classes predicts the name."""
        return pd.DataFrame(self.predict_columns(inputs, batch_size))

    @torch.inference_mode()
    def predict_columns(
        self, inputs: dict[str, np.ndarray], batch_size: int = 256
    ) -> dict[str, list[Any]]:
        """``predict_inputs``'s columns as lists, before they become a frame."""
        columns: dict[str, list[Any]] = {}
        n = len(next(iter(inputs.values())))
        for start in range(0, n, batch_size):
            batch = batch_inputs({k: v[start : start + batch_size] for k, v in inputs.items()})
            outputs = self.forward(channels_last(to_device(batch, self.device)))
            all_decoded = self.model.decode(outputs)
            for task in self.model.tasks:
                decoded = all_decoded[task.name]
                pred = decoded.prediction.cpu()
                values = pred.tolist() if pred.dtype == torch.long else pred.double().tolist()
                if task.classes is not None:
                    values = [task.classes[v] for v in values]
                columns.setdefault(task.name, []).extend(values)
                if decoded.proba is not None:
                    probas = decoded.proba.double().tolist()
                    columns.setdefault(f"{task.name}_proba", []).extend(probas)
        return columns

    def predict_images(self, images: np.ndarray, batch_size: int = 256) -> pd.DataFrame:
        """For a model with one image input: uint8 ``[N, H, W, C]`` images."""
        (spec,) = self.spec.input_specs()
        return self.predict_inputs({spec.name: images}, batch_size)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.predict_inputs(request_inputs(frame, self.spec.input_specs()))


def serve_torch_threads() -> int:
    """Torch threads of a server process (``MTLFLOW_SERVE_TORCH_THREADS``, default 1; an
    ``OMP_NUM_THREADS`` set for the server is left as it is). Measured on 2 cores: one
    thread answered a lone 64 px image in 9.2 ms against 14.1 with two, at the same
    throughput; with other work on the CPU, two threads waiting for each other took 36 ms
    for one image (benchmarks/README.md, "Serving latency")."""
    return int(os.environ.get("MTLFLOW_SERVE_TORCH_THREADS", 1))


class MultiTaskPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: rows of raw inputs in, one column per task (+ ``_proba``) out.
    Concurrent calls (the scoring server runs each request in a thread) share forward passes
    through a ``MicroBatcher``; each call gets exactly its own rows back."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        # MLflow's scoring server turns a frame back into these records for its JSON
        # (``DataFrame.to_dict``): there the rows go out as records, 0.8 ms sooner a request.
        self.as_records = in_scoring_server()
        if self.as_records and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(serve_torch_threads())
        onnx_file = context.artifacts.get("onnx")  # absent: logged without (or before) it
        self.predictor = Predictor(
            Path(context.artifacts["weights"]),
            Path(context.artifacts["spec"]),
            onnx_file=Path(onnx_file) if onnx_file and serve_engine() == "onnx" else None,
        )
        self.batcher = MicroBatcher(self.predictor.predict_columns)
        self.trimmer = FreedMemoryTrimmer()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame | list[dict[str, Any]]:
        """One column per task (+ ``_proba``): a frame, or in the scoring server the frame's
        rows as records, the JSON MLflow writes either way."""
        try:
            with decode_slot:
                inputs = request_inputs(model_input, self.predictor.spec.input_specs())
            columns = self.batcher(inputs)
            if self.as_records:
                rows = zip(*columns.values(), strict=True)
                return [dict(zip(columns, row, strict=True)) for row in rows]
            return pd.DataFrame(columns)
        except InvalidRequest as exc:
            # MLflow's scoring server turns this into HTTP 400 and keeps serving.
            raise RequestRefused(str(exc)) from None
        finally:
            self.trimmer.touch()


def example_request(
    spec: ModelSpec, inputs: dict[str, np.ndarray], table_csv: Path, rows: int = 2
) -> pd.DataFrame:
    """The first ``rows`` of a split as a client sends them (the logged model's input
    example), from the split's arrays already in memory and its table rows."""
    table = pd.read_csv(table_csv, dtype=str, nrows=rows)
    return raw_request(spec, {name: array[:rows] for name, array in inputs.items()}, table)


def signature_for(predictor: Predictor, example: pd.DataFrame) -> ModelSignature:
    return infer_signature(example, predictor.predict_frame(example))


def log_pyfunc_model(checkpoint_dir: Path, example: pd.DataFrame | np.ndarray) -> ModelInfo:
    """Log the checkpoint as a models-from-code pyfunc with signature and input example
    (request rows, or uint8 images for a model with one image input)."""
    weights, spec = checkpoint_dir / WEIGHTS_FILE, checkpoint_dir / SPEC_FILE
    predictor = Predictor(weights, spec)
    if isinstance(example, np.ndarray):
        example = pd.DataFrame({IMAGE_COLUMN: [encode_png(img) for img in example]})
    with tempfile.TemporaryDirectory() as clean, warnings.catch_warnings():
        artifacts = {"weights": str(weights), "spec": str(spec)}
        onnx_file = Path(clean) / ONNX_FILE
        failed = predictor.export_onnx(example, onnx_file)
        if failed is None:
            artifacts["onnx"] = str(onnx_file)
        else:
            warnings.warn(f"serving this model with torch: its ONNX export {failed}", stacklevel=2)
        if mlflow.active_run() is not None:
            mlflow.set_tag(ENGINE_TAG, "torch" if failed is not None else "onnxruntime")
        # MLflow hints that integer columns cannot hold missing values; ours are predicted
        # class indices, never missing, so the hint does not apply.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        # The model carries its own copy of the code, without byte-code caches.
        code = [
            shutil.copytree(
                src, Path(clean) / src.name, ignore=shutil.ignore_patterns("__pycache__")
            )
            for src in PACKAGE_DIRS
        ]
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ENTRY_FILE),
            artifacts=artifacts,
            code_paths=[str(p) for p in code],
            signature=signature_for(predictor, example),
            input_example=example,
            pip_requirements=_requirements(),
        )


def _requirements() -> list[str]:
    """Pinned from the running environment; saves MLflow's slow requirement inference."""
    from importlib.metadata import version

    pins = []
    packages = ("mlflow", "torch", "torchvision", "timm", "safetensors", "numpy", "pandas")
    for package in (*packages, "pillow", "scikit-learn", "torchjd", "onnxruntime"):
        pins.append(f"{package}=={version(package).split('+')[0]}")
    return pins
