"""Weights a backbone starts from, and the trained trunk exported for another project.

A weights file (``.safetensors``, ``.pt``, ``.pth``) is read with ``weights_only=True`` (or
safetensors), its SHA-256 checked when one is given, and matched against the backbone's own
naming: shapes must agree, and missing or unexpected keys are reported. A file written by
``export_backbone`` carries the backbone it came from in its metadata, so loading it into
another architecture fails with that name instead of a list of keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from mtl_models.nn.backbones import Backbone, ZooBackbone
from mtl_models.nn.model import ModelSpec, MultiTaskModel

SUFFIXES = (".safetensors", ".pt", ".pth")
EXPORT_FORMAT = "mtlflow-backbone"


class WeightsError(ValueError):
    """Weights that are missing, corrupt or for another network (one line, names the file)."""


@dataclass(frozen=True)
class WeightsReport:
    """What loading matched: where the weights came from, and the keys on either side that
    the other did not have."""

    source: str
    loaded: int
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        def few(keys: tuple[str, ...]) -> str:
            return ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")

        parts = [f"{self.loaded} tensors from {self.source}"]
        if self.missing:
            parts.append(f"{len(self.missing)} left at their initial values ({few(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} in the file unused ({few(self.unexpected)})")
        return "; ".join(parts)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_weights(path: Path, sha256: str | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors in a weights file and its metadata; ``WeightsError`` names what is wrong."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise WeightsError(f"{path}: expected a {', '.join(SUFFIXES)} weights file")
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise WeightsError(f"{path}: SHA-256 is {actual}, expected {sha256.lower()}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            metadata = {}
            if isinstance(loaded, dict) and isinstance(loaded.get("metadata"), dict):
                metadata = {str(k): str(v) for k, v in loaded["metadata"].items()}
            for wrapper in ("state_dict", "model", "model_state_dict"):
                if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
                    loaded = loaded[wrapper]
                    break
            state = loaded
    except WeightsError:
        raise
    except Exception as exc:  # truncated, not a checkpoint, pickled code refused
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: not a readable weights file ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in state.items()}, metadata


def matching_keys(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor], network: str
) -> list[str]:
    """The keys of ``state`` that ``network`` (whose tensors are ``expected``) has; raises
    when there are none or a shape differs (the file is for another network)."""
    shared = [key for key in state if key in expected]
    if not shared:
        raise WeightsError(
            f"none of its {len(state)} tensors belongs to {network} (the file has e.g. "
            f"{next(iter(state), 'nothing')}; the network e.g. {next(iter(expected), 'nothing')})"
        )
    for key in shared:
        if tuple(state[key].shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"'{key}' has shape {tuple(state[key].shape)}, {network} needs "
                f"{tuple(expected[key].shape)}"
            )
    return shared


def _match(
    backbone: Backbone, state: Mapping[str, Tensor], source: str, metadata: dict[str, str]
) -> WeightsReport:
    """Check ``state`` against the backbone's blocks and make it their starting point."""
    expected: dict[str, Tensor] = {}
    for name, block in zip(backbone.block_names(), backbone.build_blocks(), strict=True):
        expected.update({f"{name}.{key}": v for key, v in block.state_dict().items()})
    try:
        shared = matching_keys(state, expected, repr(backbone))
    except WeightsError as exc:
        raise WeightsError(f"{source}: {exc}") from None
    backbone.initial_state = {key: state[key] for key in shared}
    return WeightsReport(
        source=source,
        loaded=len(shared),
        missing=tuple(
            k for k in expected if k not in state and not k.endswith("num_batches_tracked")
        ),
        unexpected=tuple(k for k in state if k not in expected),
        metadata=metadata,
    )


def load_initial_weights(
    backbone: Backbone,
    name: str,
    *,
    pretrained: bool = False,
    file: Path | None = None,
    sha256: str | None = None,
) -> WeightsReport | None:
    """Give ``backbone`` (registered as ``name``) its starting weights: the library's own
    (``pretrained``) or a file's. None when it starts from scratch."""
    if pretrained and file is not None:
        raise WeightsError("pretrained and a weights file exclude each other; choose one")
    if pretrained:
        if not isinstance(backbone, ZooBackbone):
            raise WeightsError(
                f"'{name}' has no library weights; pretrained needs timm/ or torchvision/"
            )
        return _match(
            backbone, backbone.library_weights(backbone.model), f"{name} (library weights)", {}
        )
    if file is None:
        return None
    state, metadata = read_weights(file, sha256)
    if metadata.get("format") == EXPORT_FORMAT:
        origin = metadata.get("backbone")
        if origin != name:
            raise WeightsError(
                f"{file}: exported from backbone '{origin}', this model's backbone is '{name}'"
            )
    elif isinstance(backbone, ZooBackbone):
        try:
            state = backbone.file_weights(backbone.model, state)
        except WeightsError as exc:
            raise WeightsError(f"{file}: {exc}") from None
    return _match(backbone, state, str(file), metadata)


def export_backbone(model: MultiTaskModel, spec: ModelSpec, path: Path) -> int:
    """Write ``model``'s trained shared trunk as a safetensors file in its backbone's naming
    (what ``model.backbone.weights`` of another project loads), with the backbone's name and
    arguments as metadata; returns the number of tensors. Written whole or not at all."""
    from safetensors.torch import save_file

    names = model.block_names[: len(model.trunk)]
    state = {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name, block in zip(names, model.trunk, strict=True)
        for key, value in block.state_dict().items()
    }
    if not state:
        raise WeightsError(
            "the shared trunk holds no weights (shared_depth 0, or a split before the first "
            "layer): nothing to export"
        )
    metadata = {
        "format": EXPORT_FORMAT,
        "backbone": spec.backbone,
        "backbone_args": json.dumps(dict(spec.backbone_args), sort_keys=True),
        "blocks": json.dumps(names),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    save_file(state, str(partial), metadata=metadata)
    partial.replace(path)  # a reader never sees half a file
    return len(state)
