"""``model``: zoo backbones by name, their starting weights and a split named by module."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pipelines.config import Params
from pipelines.config import parse_params as parse
from pipelines.errors import ConfigError
from tests.conftest import REPO


def parse_params(sections: dict[str, Any]) -> Params:
    """The shipped params with ``sections`` replaced."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tune"]["search_space"] = {}
    for name, section in sections.items():
        raw[name] = {**raw.get(name, {}), **section} if name != "model" else section
    return parse(raw)


def model(**entries: object) -> dict[str, object]:
    return {"model": entries}


def test_a_zoo_backbone_takes_pretrained_a_module_split_and_its_own_arguments() -> None:
    params = parse_params(
        model(
            backbone={"name": "torchvision/squeezenet1_1", "pretrained": True, "input_size": 96},
            shared_depth="features.11",
        )
    )
    assert params.model.backbone.zoo
    assert params.model.shared_depth == "features.11"
    # width and depth are the small backbones' size: a zoo network's is its own
    assert params.model.backbone.args() == {"input_size": 96}


def test_small_backbones_keep_counting_blocks() -> None:
    params = parse_params(model(backbone={"name": "cnn", "width": 8, "depth": 3}, shared_depth=2))
    assert params.model.backbone.args() == {"width": 8, "depth": 3}
    assert params.model.shared_depth == 2


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            {"backbone": {"name": "cnn", "pretrained": True}},
            r"model\.backbone.*'cnn' has no library weights; pretrained needs timm/<name>",
        ),
        (
            {"backbone": {"name": "timm/resnet18", "width": 64}},
            r"model\.backbone.*'timm/resnet18' takes no \['width'\]",
        ),
        (
            {"backbone": {"name": "cnn", "weights": "w.safetensors", "pretrained": True}},
            "pretrained and weights exclude each other",
        ),
        (
            {"backbone": {"name": "cnn", "sha256": "a" * 64}},
            "sha256 checks a weights file; set weights too",
        ),
        (
            {"backbone": {"name": "cnn", "weights": "weights.bin"}},
            r"weights 'weights.bin': expected \.safetensors, \.pt or \.pth",
        ),
        (
            {"backbone": {"name": "cnn", "weights": "w.pt", "sha256": "xyz"}},
            r"model\.backbone\.sha256",
        ),
        (
            {"backbone": {"name": "cnn"}, "shared_depth": "features.11"},
            "shared_depth 'features.11' names a module; that needs a timm/ or torchvision/",
        ),
        (
            {"backbone": {"name": "torchvision/"}},
            "'torchvision/' names no model",
        ),
        (
            {"backbone": {"name": "keras/resnet"}},
            r"unknown backbone 'keras/resnet'; available: .*timm/<name>.*torchvision/<name>",
        ),
    ],
    ids=[
        "pretrained-small",
        "width-on-zoo",
        "both-sources",
        "hash-without-file",
        "suffix",
        "bad-hash",
        "path-split-small",
        "no-model",
        "unknown-family",
    ],
)
def test_bad_backbone_settings_fail_naming_the_key(entries: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params(model(**entries))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"freeze_epochs": -1}, r"train\.fine_tune\.freeze_epochs"),
        ({"backbone_lr_scale": 0}, r"train\.fine_tune\.backbone_lr_scale"),
        ({"backbone_lr_scale": 1.5}, r"train\.fine_tune\.backbone_lr_scale"),
        ({"unfreeze": 2}, r"train\.fine_tune\.unfreeze"),
    ],
)
def test_fine_tune_keys_are_validated(entries: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params({"train": {"fine_tune": entries}})


def test_the_backbone_and_fine_tuning_are_searchable() -> None:
    params = parse_params(
        {
            "tune": {
                "search_space": {
                    "model.backbone.name": {"choices": ["cnn", "torchvision/squeezenet1_1"]},
                    "model.backbone.width": {
                        "low": 8,
                        "high": 32,
                        "when": {"model.backbone.name": "cnn"},
                    },
                    "train.fine_tune.backbone_lr_scale": {"low": 0.05, "high": 1.0, "log": True},
                    "train.fine_tune.freeze_epochs": {"low": 0, "high": 3},
                    "train.fine_tune.freeze_batchnorm": {"choices": [True, False]},
                }
            }
        }
    )
    assert "model.backbone.name" in params.tune.search_space
