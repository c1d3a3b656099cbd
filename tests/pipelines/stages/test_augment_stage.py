"""The augmentation policy at the pipeline level: bad entries stop training before it starts,
and `mtlflow augment` shows a policy without training."""

from __future__ import annotations

import json

import pytest

from pipelines import stages
from pipelines.config import parse_params
from pipelines.errors import ConfigError
from tests.conftest import tiny_params_dict, write_params
from tests.helpers import run


@pytest.fixture
def split_project(project):
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    return params, paths


def test_an_invalid_transform_argument_stops_training_before_anything_is_written(split_project):
    params, paths = split_project
    previous = paths.models_dir / "model.pt"
    previous.parent.mkdir()
    previous.write_bytes(b"the last good model")
    raw = params.model_dump(by_alias=True, mode="json")
    raw["augment"]["noise_blur"][0] |= {"std_range": [0.5, 0.1]}  # GaussNoise: low > high
    bad = parse_params(raw)
    with pytest.raises(ConfigError, match=r"augment\.noise_blur\[0\]: GaussNoise\("):
        stages.train(bad, paths)
    assert previous.read_bytes() == b"the last good model"
    assert not (paths.root / "mlflow.db").exists()  # no run was started
    assert not (paths.reports_dir / "augmentation.json").exists()


def test_disabled_augmentation_trains_on_the_raw_images_and_says_so(split_project):
    params, paths = split_project
    raw = params.model_dump(by_alias=True, mode="json")
    raw["augment"]["enabled"] = False
    raw["train"]["epochs"] = 1
    stages.train(parse_params(raw), paths)
    report = json.loads((paths.reports_dir / "augmentation.json").read_text())
    assert report["enabled"] is False and report["kept"] == []


def test_cli_augment_prints_the_policy_and_writes_report_and_preview(tmp_path):
    write_params(tmp_path, tiny_params_dict(tmp_path))
    for verb in ("prepare", "split"):
        assert run(["mtlflow", verb], tmp_path).returncode == 0
    result = run(["mtlflow", "augment", "--set", "augment.preview_samples=2"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "keep geometric   HorizontalFlip(p=0.5): kept with label remap" in result.stdout
    assert "skip noise_blur  CoarseDropout(p=0.3): erase changes" in result.stdout
    report = json.loads((tmp_path / "reports" / "augmentation.json").read_text())
    assert {d["name"] for d in report["kept"]} >= {"HorizontalFlip", "VerticalFlip"}
    assert (tmp_path / "reports" / "plots" / "augmentation_preview.png").is_file()
    assert not (tmp_path / "models").exists()  # no training


def test_cli_reports_an_unknown_transform_with_a_suggestion(tmp_path):
    write_params(tmp_path, tiny_params_dict(tmp_path))
    result = run(
        ["mtlflow", "augment", "--set", "augment.geometric=[{name: HorizontalFlp}]"], tmp_path
    )
    assert result.returncode == 2
    assert "augment.geometric" in result.stderr
    assert "did you mean 'HorizontalFlip'" in result.stderr
    assert "Traceback" not in result.stderr
