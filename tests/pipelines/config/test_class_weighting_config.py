"""Class imbalance in params and in `train`: where the settings come from, what fails, and
what the trained model, its spec and its MLflow run record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
import yaml

from mtl_models.losses import class_weights
from mtl_models.nn.checkpoint import SPEC_FILE, WEIGHTS_FILE, load_checkpoint
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import images_to_tensor
from pipelines import stages
from pipelines.config import Params, load_params, overlay
from pipelines.data.splits import load_split
from pipelines.errors import ConfigError
from pipelines.services.fitting import fit_task_specs
from tests.conftest import REPO

ALLOWED = ("'none'", "'balanced'", "'effective_number'")


def mixed_params(tmp_path: Path, tasks: dict[str, Any] | None = None) -> Path:
    """The shipped params with one task of every kind (the file has ordinal tasks only)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tasks"] = tasks or {
        "pits_left": {"kind": "ordinal", "n_classes": 6},
        "shape": {"kind": "classification", "n_classes": 3},
        "defective": {"kind": "binary"},
        "roughness": {"kind": "regression"},
    }
    raw["augment"]["remaps"] = {}  # they name the shipped tasks
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def settings(params: Params) -> dict[str, tuple[str, float]]:
    return {name: (params.class_weighting(name), params.focal_gamma(name)) for name in params.tasks}


def test_by_default_no_task_is_weighted_or_focal(tmp_path: Path) -> None:
    for params in (load_params(REPO / "params.yaml"), load_params(mixed_params(tmp_path))):
        assert params.train.class_weighting == "none"
        assert params.train.focal_gamma == 0.0
        assert set(settings(params).values()) == {("none", 0.0)}
        assert all(t.class_weights is None and t.focal_gamma == 0.0 for t in params.task_specs())


def test_train_settings_apply_to_every_discrete_task_and_never_to_regression(
    tmp_path: Path,
) -> None:
    params = load_params(
        mixed_params(tmp_path), ["train.class_weighting=balanced", "train.focal_gamma=2"]
    )
    assert settings(params) == {
        "pits_left": ("balanced", 2.0),
        "shape": ("balanced", 2.0),
        "defective": ("balanced", 2.0),
        "roughness": ("none", 0.0),
    }
    specs = {t.name: t for t in params.task_specs()}
    assert {name: t.focal_gamma for name, t in specs.items()} == {
        "pits_left": 2.0,
        "shape": 2.0,
        "defective": 2.0,
        "roughness": 0.0,
    }
    # weights are fitted on the train split later, not taken from the config
    assert all(t.class_weights is None for t in specs.values())


def test_a_tasks_own_setting_wins_over_train(tmp_path: Path) -> None:
    path = mixed_params(
        tmp_path,
        {
            "pits_left": {"kind": "ordinal", "n_classes": 6, "class_weighting": "effective_number"},
            # explicit "none" and 0 must win over train's values, not fall back to them
            "shape": {
                "kind": "classification",
                "n_classes": 3,
                "class_weighting": "none",
                "focal_gamma": 0,
            },
            "defective": {"kind": "binary", "focal_gamma": 0.5},
            "roughness": {"kind": "regression", "class_weighting": "none", "focal_gamma": 0},
        },
    )
    params = load_params(path, ["train.class_weighting=balanced", "train.focal_gamma=2"])
    assert settings(params) == {
        "pits_left": ("effective_number", 2.0),
        "shape": ("none", 0.0),
        "defective": ("balanced", 0.5),
        "roughness": ("none", 0.0),
    }
    # a task setting also wins when given as an override
    params = load_params(path, ["tasks.shape.class_weighting=balanced"])
    assert settings(params)["shape"] == ("balanced", 0.0)
    assert settings(params)["defective"] == ("none", 0.5)


@pytest.mark.parametrize(
    "override",
    [
        "tasks.roughness.class_weighting=balanced",
        "tasks.roughness.class_weighting=effective_number",
        "tasks.roughness.focal_gamma=2",
    ],
)
def test_a_regression_task_takes_no_class_weighting_or_focal_gamma(
    tmp_path: Path, override: str
) -> None:
    path = mixed_params(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_params(path, [override])
    message = str(err.value)
    assert str(path) in message
    assert "  tasks.roughness: Value error, a regression task takes no class_weighting" in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.class_weighting=inverse_frequency", "train.class_weighting"),
        ("tasks.pits_left.class_weighting=Balanced", "tasks.pits_left.class_weighting"),
    ],
)
def test_an_unknown_method_names_the_key_and_the_allowed_values(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", [override])
    message = str(err.value)
    assert f"  {key}:" in message
    assert all(value in message for value in ALLOWED), message
    assert "params.yaml" in message


@pytest.mark.parametrize("key", ["train.focal_gamma", "tasks.pits_left.focal_gamma"])
def test_a_negative_focal_gamma_names_the_key(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", [f"{key}=-1"])
    assert f"  {key}: Input should be greater than or equal to 0" in str(err.value)


def test_settings_survive_a_trial_overlay() -> None:
    """Tuning and best_params overlay values on the dumped params: per-task settings stay."""
    params = load_params(
        REPO / "params.yaml",
        [
            "train.class_weighting=effective_number",
            "train.focal_gamma=1.5",
            "tasks.pits_left.class_weighting=none",
            "tasks.pits_right.focal_gamma=0",
        ],
    )
    trial = overlay(params, {"train.lr": 1e-3})
    assert settings(trial) == settings(params)
    assert settings(trial)["pits_left"] == ("none", 1.5)
    assert settings(trial)["pits_right"] == ("effective_number", 0.0)
    assert settings(trial)["scratches_left"] == ("effective_number", 1.5)


def test_class_weighting_is_tunable(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tune"]["search_space"] = {
        "train.class_weighting": {"choices": ["none", "balanced", "effective_number"]},
        "train.focal_gamma": {"low": 0.0, "high": 3.0},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    load_params(path)  # every choice and both ends give valid params
    raw["tune"]["search_space"]["train.class_weighting"]["choices"].append("inverse")
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"tune\.search_space\.train\.class_weighting"):
        load_params(path)


def test_fit_task_specs_fits_weights_per_task_on_the_given_labels() -> None:
    tasks = [
        TaskSpec("ord", "ordinal", n_classes=4, focal_gamma=1.0),
        TaskSpec("cls", "classification", n_classes=3),
        TaskSpec("bin", "binary"),
        TaskSpec("reg", "regression"),
    ]
    nan = np.nan
    labels = np.array(
        [
            [0, 0, 0, 1.0],
            [0, 0, 0, 2.0],
            [0, 1, 0, 3.0],
            [1, 0, 1, nan],
            [3, nan, 0, 5.0],
            [nan, 2, 0, 4.0],
        ]
    )
    fitted = fit_task_specs(
        tasks, labels, {"ord": "balanced", "cls": "effective_number", "reg": "none"}
    )
    assert [t.name for t in fitted] == ["ord", "cls", "bin", "reg"]
    assert fitted[0].class_weights == pytest.approx(class_weights(labels[:, 0], 4, "balanced"))
    assert fitted[0].class_weights == pytest.approx([5 / 9, 5 / 3, 0.0, 5 / 3])
    assert fitted[0].focal_gamma == 1.0  # kept from the task
    assert fitted[1].class_weights == pytest.approx(
        class_weights(labels[:, 1], 3, "effective_number")
    )
    assert fitted[2].class_weights is None  # not in the mapping: none
    assert fitted[3].class_weights is None
    assert fitted[3].target_mean == pytest.approx(3.0)
    assert fitted[3].target_std == pytest.approx(np.std([1.0, 2, 3, 5, 4]))
    assert all(t.class_weights is None for t in fit_task_specs(tasks, labels))


@pytest.mark.slow
def test_train_fits_class_weights_on_the_train_split_and_records_them(project) -> None:
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    params = load_params(
        paths.root / "params.yaml",
        [
            "train.class_weighting=balanced",
            "train.focal_gamma=1.0",
            "tune.enabled=false",  # train reads reports/best_params.yaml only when tuning is on
            "tasks.corrosion_right.class_weighting=effective_number",
            "train.affinity.enabled=false",  # saves time; no part of this feature
            "train.epochs=1",
        ],
    )
    assert not paths.best_params.exists()
    run_info = stages.train(params, paths)

    _, train_labels = load_split(paths, "train", params.task_specs())
    spec = json.loads((paths.models_dir / SPEC_FILE).read_text())
    names = list(params.tasks)
    assert [t["name"] for t in spec["tasks"]] == names
    for t, task in enumerate(spec["tasks"]):
        method = "effective_number" if task["name"] == "corrosion_right" else "balanced"
        expected = class_weights(train_labels[:, t], 6, method)
        assert task["class_weights"] == pytest.approx(expected), task["name"]
        assert task["focal_gamma"] == 1.0
    # the tiny split is imbalanced: the weights are not all one
    assert any(np.ptp(task["class_weights"]) > 0.5 for task in spec["tasks"])

    run = mlflow.MlflowClient(params.tracking.uri).get_run(run_info["run_id"])
    assert run.data.params["train.class_weighting"] == "balanced"
    assert float(run.data.params["train.focal_gamma"]) == 1.0
    assert run.data.params["tasks.corrosion_right.class_weighting"] == "effective_number"

    model, loaded = load_checkpoint(paths.models_dir / WEIGHTS_FILE, paths.models_dir / SPEC_FILE)
    for t, task in enumerate(loaded.tasks):
        assert task.class_weights == pytest.approx(spec["tasks"][t]["class_weights"])
        torch.testing.assert_close(
            model.head(task.name).class_weights, torch.tensor(task.class_weights)
        )
    val_inputs, val_labels = load_split(paths, "val", params.task_specs())
    val_images = val_inputs["image"]
    with torch.no_grad():
        outputs = model(images_to_tensor(val_images))
        losses = model.task_losses(outputs, torch.from_numpy(val_labels).float())
        decoded = model.decode(outputs)
    assert bool(torch.isfinite(losses).all())
    for name in names:
        prediction = decoded[name].prediction
        assert prediction.shape == (len(val_images),)
        assert int(prediction.min()) >= 0 and int(prediction.max()) <= 5
