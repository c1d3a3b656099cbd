"""Serving: decode request images, run the model, return one column per task.

``ImagePredictor`` is plain Python (used by tests and benchmarks); ``MultiTaskPyfunc`` wraps
it for MLflow. The model is logged with models-from-code (``pipelines/pyfunc_entry.py``), so
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

from mtl_models.data import images_to_tensor
from mtl_models.model import SPEC_FILE, WEIGHTS_FILE, load_checkpoint

IMAGE_COLUMN = "image"
ENTRY_FILE = Path(__file__).with_name("pyfunc_entry.py")
PACKAGE_DIRS = [Path(__file__).parent, Path(__file__).parents[1] / "mtl_models"]


class InvalidRequest(ValueError):
    """A request row that cannot be scored; the message names the row and the reason."""


def encode_png(image: np.ndarray) -> str:
    """uint8 ``[H, W]`` or ``[H, W, C]`` -> base64 PNG, as a client would send it."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_images(frame: pd.DataFrame, size: int, channels: int) -> np.ndarray:
    """The ``image`` column (base64 PNG/JPEG, any size) -> uint8 ``[N, size, size, channels]``."""
    if IMAGE_COLUMN not in frame.columns:
        raise InvalidRequest(
            f"missing column '{IMAGE_COLUMN}' (base64-encoded PNG/JPEG); got {list(frame.columns)}"
        )
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(frame), size, size, channels), dtype=np.uint8)
    for row, value in enumerate(frame[IMAGE_COLUMN]):
        if not isinstance(value, (str, bytes)) or len(value) == 0:
            raise InvalidRequest(f"row {row}: '{IMAGE_COLUMN}' must be a non-empty base64 string")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(
                f"row {row}: '{IMAGE_COLUMN}' is not valid base64 ({exc})"
            ) from None
        try:
            with Image.open(io.BytesIO(raw)) as img:
                img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                out[row] = np.asarray(img).reshape(size, size, channels)
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidRequest(
                f"row {row}: '{IMAGE_COLUMN}' is not a decodable image ({exc})"
            ) from None
    return out


class ImagePredictor:
    """A loaded checkpoint that maps uint8 images to a prediction frame."""

    def __init__(self, weights: Path, spec_file: Path, device: str = "cpu"):
        self.model, self.spec = load_checkpoint(weights, spec_file)
        self.device = torch.device(device)
        self.model.to(self.device)

    @classmethod
    def from_dir(cls, directory: Path) -> ImagePredictor:
        return cls(directory / WEIGHTS_FILE, directory / SPEC_FILE)

    @torch.no_grad()
    def predict_images(self, images: np.ndarray, batch_size: int = 256) -> pd.DataFrame:
        columns: dict[str, list[Any]] = {}
        for start in range(0, len(images), batch_size):
            batch = images_to_tensor(images[start : start + batch_size]).to(self.device)
            for name, decoded in self.model.decode(self.model(batch)).items():
                pred = decoded.prediction.cpu()
                values = pred.tolist() if pred.dtype == torch.long else pred.double().tolist()
                columns.setdefault(name, []).extend(values)
                if decoded.proba is not None:
                    columns.setdefault(f"{name}_proba", []).extend(decoded.proba.double().tolist())
        return pd.DataFrame(columns)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        images = decode_images(frame, self.spec.image_size, self.spec.channels)
        return self.predict_images(images)


class MultiTaskPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: rows with an ``image`` column in, one column per task (+ ``_proba``) out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.predictor = ImagePredictor(
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


def signature_for(predictor: ImagePredictor, example: pd.DataFrame) -> ModelSignature:
    return infer_signature(example, predictor.predict_frame(example))


def log_pyfunc_model(checkpoint_dir: Path, example_images: np.ndarray) -> ModelInfo:
    """Log the checkpoint as a models-from-code pyfunc with signature and input example."""
    weights, spec = checkpoint_dir / WEIGHTS_FILE, checkpoint_dir / SPEC_FILE
    predictor = ImagePredictor(weights, spec)
    example = pd.DataFrame({IMAGE_COLUMN: [encode_png(img) for img in example_images]})
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
