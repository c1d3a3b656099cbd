"""A trained model on disk: its weights (``model.pt``, a state dict loaded with
``weights_only=True``) and the spec that rebuilds it before they load (``model_spec.json``)."""

from __future__ import annotations

import json
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


def load_checkpoint(weights: Path, spec_file: Path) -> tuple[MultiTaskModel, ModelSpec]:
    spec = ModelSpec.from_dict(json.loads(spec_file.read_text()))
    model = build_model(spec)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    return model, spec
