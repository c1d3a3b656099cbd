"""Serving: turn request columns into the model's inputs, run it, return one column per task.

A request row holds each input raw: an image input as a base64 PNG/JPEG in the column named
after the input (``image`` by default), a signal as a list of numbers per channel column, and
table features as their own columns, unscaled and un-encoded: the encodings fitted on the
training split travel inside the model and are applied here.

``Predictor`` is plain Python (used by tests and benchmarks); ``MultiTaskPyfunc`` wraps it
for MLflow. The model is logged with models-from-code (``pipelines/serving/entry.py``), so
nothing is pickled: the logged code, weights and spec rebuild it.
"""

from __future__ import annotations

import base64
import binascii
import io
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image, UnidentifiedImageError

from mtl_models.inputs import FeatureInput, ImageInput, InputSpec, SignalInput
from mtl_models.nn.model import SPEC_FILE, WEIGHTS_FILE, ModelSpec, load_checkpoint
from mtl_models.train.loaders import batch_inputs, to_device

IMAGE_COLUMN = "image"
ENTRY_FILE = Path(__file__).with_name("entry.py")
PACKAGE_DIRS = [Path(__file__).parents[1], Path(__file__).parents[2] / "mtl_models"]


class InvalidRequest(ValueError):
    """A request row that cannot be scored; the message names the row and the reason."""


def encode_png(image: np.ndarray) -> str:
    """uint8 ``[H, W]`` or ``[H, W, C]`` -> base64 PNG, as a client would send it."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_images(
    frame: pd.DataFrame, size: int, channels: int, column: str = IMAGE_COLUMN
) -> np.ndarray:
    """A column of base64 PNG/JPEG (any size) -> uint8 ``[N, size, size, channels]``."""
    if column not in frame.columns:
        raise InvalidRequest(
            f"missing column '{column}' (base64-encoded PNG/JPEG); got {list(frame.columns)}"
        )
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(frame), size, size, channels), dtype=np.uint8)
    for row, value in enumerate(frame[column]):
        if not isinstance(value, (str, bytes)) or len(value) == 0:
            raise InvalidRequest(f"row {row}: '{column}' must be a non-empty base64 string")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"row {row}: '{column}' is not valid base64 ({exc})") from None
        try:
            with Image.open(io.BytesIO(raw)) as img:
                img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                out[row] = np.asarray(img).reshape(size, size, channels)
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidRequest(
                f"row {row}: '{column}' is not a decodable image ({exc})"
            ) from None
    return out


def _columns(frame: pd.DataFrame, needed: list[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InvalidRequest(f"missing {what} column(s) {missing}; got {list(frame.columns)}")


def _signals(frame: pd.DataFrame, spec: SignalInput) -> np.ndarray:
    _columns(frame, list(spec.channels), f"signal '{spec.name}'")
    out = np.empty((len(frame), *spec.shape))
    for c, column in enumerate(spec.channels):
        for row, value in enumerate(frame[column]):
            signal = np.asarray(value, dtype=float) if value is not None else np.empty(0)
            if signal.shape != (spec.length,) or not np.isfinite(signal).all():
                raise InvalidRequest(
                    f"row {row}: '{column}' must be a list of {spec.length} finite numbers"
                )
            out[row, c] = signal
    return spec.encode(out)


def _features(frame: pd.DataFrame, spec: FeatureInput) -> np.ndarray:
    _columns(frame, [*spec.numeric, *spec.categorical], "feature")
    numeric = np.empty((len(frame), len(spec.numeric)))
    for j, column in enumerate(spec.numeric):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(np.isnan(values) & frame[column].notna().to_numpy())
        if len(bad):
            value = frame[column].iloc[bad[0]]
            raise InvalidRequest(f"row {bad[0]}: '{column}' wants a number or null, not {value!r}")
        numeric[:, j] = values
    categorical = np.array([list(frame[c]) for c in spec.categorical], dtype=object).T.reshape(
        len(frame), len(spec.categorical)
    )
    return spec.encode(numeric, categorical)


def request_inputs(frame: pd.DataFrame, specs: tuple[InputSpec, ...]) -> dict[str, np.ndarray]:
    """Raw request columns -> the arrays the model reads, encoded as in training."""
    arrays = {}
    for spec in specs:
        if isinstance(spec, ImageInput):
            arrays[spec.name] = decode_images(frame, spec.size, spec.channels, spec.name)
        elif isinstance(spec, SignalInput):
            arrays[spec.name] = _signals(frame, spec)
        else:
            arrays[spec.name] = _features(frame, spec)
    return arrays


class Predictor:
    """A loaded checkpoint that maps inputs to a prediction frame."""

    def __init__(self, weights: Path, spec_file: Path, device: str = "cpu"):
        self.model, self.spec = load_checkpoint(weights, spec_file)
        self.device = torch.device(device)
        self.model.to(self.device)

    @classmethod
    def from_dir(cls, directory: Path) -> Predictor:
        return cls(directory / WEIGHTS_FILE, directory / SPEC_FILE)

    @torch.no_grad()
    def predict_inputs(self, inputs: dict[str, np.ndarray], batch_size: int = 256) -> pd.DataFrame:
        """Encoded input arrays (as in the split files) -> one column per task (+ ``_proba``);
        a task with named classes predicts the name."""
        columns: dict[str, list[Any]] = {}
        n = len(next(iter(inputs.values())))
        for start in range(0, n, batch_size):
            batch = batch_inputs({k: v[start : start + batch_size] for k, v in inputs.items()})
            all_decoded = self.model.decode(self.model(to_device(batch, self.device)))
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
        return pd.DataFrame(columns)

    def predict_images(self, images: np.ndarray, batch_size: int = 256) -> pd.DataFrame:
        """For a model with one image input: uint8 ``[N, H, W, C]`` images."""
        (spec,) = self.spec.input_specs()
        return self.predict_inputs({spec.name: images}, batch_size)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.predict_inputs(request_inputs(frame, self.spec.input_specs()))


class MultiTaskPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: rows of raw inputs in, one column per task (+ ``_proba``) out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.predictor = Predictor(
            Path(context.artifacts["weights"]), Path(context.artifacts["spec"])
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        try:
            return self.predictor.predict_frame(model_input)
        except InvalidRequest as exc:
            # MLflow's scoring server turns this error code into HTTP 400 and keeps serving.
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


def raw_request(
    spec: ModelSpec, inputs: dict[str, np.ndarray], table_rows: pd.DataFrame
) -> pd.DataFrame:
    """Request rows as a client sends them, from a split's arrays and its raw table rows."""
    columns: dict[str, Any] = {}
    for s in spec.input_specs():
        array = inputs[s.name][: len(table_rows)]
        if isinstance(s, ImageInput):
            columns[s.name] = [encode_png(img) for img in array]
        elif isinstance(s, SignalInput):
            raw = array * np.asarray(s.std)[None, :, None] + np.asarray(s.mean)[None, :, None]
            for c, column in enumerate(s.channels):
                columns[column] = [row.tolist() for row in raw[:, c]]
        else:
            for column in s.numeric:
                columns[column] = pd.to_numeric(table_rows[column], errors="coerce").tolist()
            for column in s.categorical:
                columns[column] = table_rows[column].tolist()
    return pd.DataFrame(columns)


def example_request(spec: ModelSpec, paths: Any, rows: int = 2) -> pd.DataFrame:
    """The first validation rows as a raw request: the logged model's input example."""
    from pipelines.data.splits import load_split

    inputs, _ = load_split(paths, "val", list(spec.tasks))
    table = pd.read_csv(paths.splits_dir / "val.csv", dtype=str, nrows=rows)
    return raw_request(spec, inputs, table)


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
            artifacts={"weights": str(weights), "spec": str(spec)},
            code_paths=[str(p) for p in code],
            signature=signature_for(predictor, example),
            input_example=example,
            pip_requirements=_requirements(),
        )


def _requirements() -> list[str]:
    """Pinned from the running environment; saves MLflow's slow requirement inference."""
    from importlib.metadata import version

    pins = []
    for package in ("mlflow", "torch", "numpy", "pandas", "pillow", "scikit-learn", "torchjd"):
        pins.append(f"{package}=={version(package).split('+')[0]}")
    return pins
