"""A zoo backbone through the pipeline: split at a named module, trained, served from the
MLflow run, its trunk exported and started from by another project; and the checks that
fail before any training when the backbone or its weights are wrong."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mtl_models.nn.weights import read_weights
from pipelines import stages
from pipelines.cli import app
from pipelines.config import Params, load_params, overlay
from pipelines.errors import ConfigError
from pipelines.files import ProjectPaths
from pipelines.services.fitting import check_backbone
from pipelines.serving import Predictor, encode_png
from tests.conftest import tiny_params_dict, write_params


def zoo_project(root: Path, **model: object) -> Params:
    raw = tiny_params_dict(root)
    raw["model"] = {"head_hidden": 16, **model}
    raw["tune"]["enabled"] = False
    raw["train"] |= {"epochs": 1}
    return load_params(write_params(root, raw))


@pytest.mark.slow
def test_squeezenet_split_at_fire8_trains_serves_and_exports_its_trunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    params = zoo_project(
        tmp_path,
        backbone={"name": "torchvision/squeezenet1_1"},
        shared_depth="features.11",
    )
    paths = ProjectPaths(tmp_path)
    stages.prepare(params, paths)
    stages.split(params, paths)
    run_info = stages.train(params, paths)

    predictor = Predictor.from_dir(paths.models_dir)
    model = predictor.model
    assert model.block_names[len(model.trunk)] == "features.11"  # fire8 starts each branch
    first_branch = next(iter(model.branches.values()))
    assert type(first_branch[0]).__name__ == "Fire"
    # the spec records the weights' normalisation, so serving needs no library lookup
    assert predictor.spec.backbone_args["mean"] == pytest.approx([0.485, 0.456, 0.406])

    # raw image bytes in, as a client sends them: the model resizes and normalises itself
    size = params.data.synthetic.image_size
    images = np.random.default_rng(0).integers(0, 255, (3, size, size, 1), dtype=np.uint8)
    request = pd.DataFrame({"image": [encode_png(image) for image in images]})
    local = predictor.predict_frame(request)
    served = mlflow.pyfunc.load_model(f"runs:/{run_info['run_id']}/model").predict(request)
    assert list(served.columns) == list(local.columns)
    for task in params.tasks:
        assert served[task].tolist() == local[task].tolist()

    result = CliRunner().invoke(app, ["export-backbone", "--out", "models/trunk.safetensors"])
    assert result.exit_code == 0, result.output
    assert "sha256:" in result.output
    state, metadata = read_weights(tmp_path / "models" / "trunk.safetensors")
    assert metadata["backbone"] == "torchvision/squeezenet1_1"
    assert any(key.startswith("features.10.") for key in state)
    assert not any(key.startswith("features.11.") for key in state)  # the trunk only

    # another project starts from the exported trunk: the same tensors, the tail reported
    started = overlay(params, {"model.backbone.weights": "models/trunk.safetensors"})
    report = check_backbone(started, predictor.spec.inputs)
    assert report is not None and report.loaded == len(state)
    assert any(key.startswith("features.11.") for key in report.missing)
    assert not report.unexpected
    exported = model.trunk[-1].expand3x3.weight
    assert torch.equal(state["features.10.expand3x3.weight"], exported.detach())


def test_a_missing_weights_file_fails_before_training_naming_key_and_file(
    project: tuple[Params, ProjectPaths],
) -> None:
    params, _ = project
    params = overlay(params, {"model.backbone.weights": "nowhere/backbone.safetensors"})
    with pytest.raises(ConfigError, match=r"model\.backbone\.weights: .*nowhere/backbone"):
        check_backbone(params, ())


def test_a_weights_file_of_another_backbone_is_refused(
    project: tuple[Params, ProjectPaths],
) -> None:
    params, paths = project
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, str(paths.root / "resnet.safetensors"))
    wrong = overlay(params, {"model.backbone.weights": "resnet.safetensors"})
    with pytest.raises(ConfigError, match=r"model\.backbone\.weights: .*none of its 1 tensors"):
        check_backbone(wrong, ())


def test_a_split_that_is_not_a_module_fails_listing_the_split_points(
    project: tuple[Params, ProjectPaths],
) -> None:
    params, _ = project
    params = overlay(
        params,
        {
            "model.backbone": {"name": "torchvision/squeezenet1_1"},
            "model.shared_depth": "features.99",
        },
    )
    with pytest.raises(ConfigError, match=r"model\.shared_depth: .*features\.11, features\.12"):
        check_backbone(params, ())
