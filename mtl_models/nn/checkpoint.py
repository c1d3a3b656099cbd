"""A trained model on disk: its weights (``model.pt``, a state dict loaded with
``weights_only=True``) and the spec that rebuilds it before they load (``model_spec.json``)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from mtl_models.nn.model import ModelSpec, MultiTaskModel, build_model

WEIGHTS_FILE = "model.pt"
SPEC_FILE = "model_spec.json"


def save_checkpoint(model: MultiTaskModel, spec: ModelSpec, directory: Path) -> None:
    """Write ``model.pt`` (state dict) and ``model_spec.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    (directory / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")


class CheckpointError(ValueError):
    """A saved model that cannot be read back (missing, truncated, edited); the message
    names the file and why."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def load_checkpoint(weights: Path, spec_file: Path) -> tuple[MultiTaskModel, ModelSpec]:
    """The model ``save_checkpoint`` wrote; ``CheckpointError`` naming the file that is
    missing or cannot be read (a truncated ``model.pt``, a ``model_spec.json`` that is not
    JSON or not a spec), not torch's or json's traceback."""
    for path in (spec_file, weights):
        if not path.is_file():
            raise CheckpointError(f"{path}: not found")
    try:
        spec = ModelSpec.from_dict(json.loads(spec_file.read_text()))
        model = build_model(spec)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON errors too
        raise CheckpointError(f"{spec_file}: not a model spec ({_first_line(exc)})") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not readable weights ({_first_line(exc)})") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{weights}: does not fit the model {spec_file.name} describes ({_first_line(exc)})"
        ) from None
    model.eval()
    return model, spec
