from pathlib import Path

import pytest
import yaml

from pipelines.config import apply_overrides, load_params, parse_params
from pipelines.errors import ConfigError
from tests.conftest import REPO


def test_shipped_params_are_valid_and_define_nine_ordinal_tasks():
    params = load_params(REPO / "params.yaml")
    assert len(params.tasks) == 9
    assert {t.kind.value for t in params.task_specs()} == {"ordinal"}
    assert params.split.train + params.split.val + params.split.test == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("override", "key_path"),
    [
        ("train.lrr=1", "train.lrr"),
        ("train.lr=fast", "train.lr"),
        ("model.backbone.width=-3", "model.backbone.width"),
        ("tasks.pits_left.kind=ordinall", "tasks.pits_left.kind"),
        ("register.model_name=[1, 2]", "register.model_name"),
        ("surprise.key=1", "surprise"),
    ],
)
def test_unknown_key_or_wrong_type_names_the_key_path(override, key_path):
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", [override])
    assert f"  {key_path}:" in str(err.value)
    assert "params.yaml" in str(err.value)


def test_overrides_are_parsed_as_yaml_values():
    params = load_params(
        REPO / "params.yaml",
        [
            "train.lr=3e-4",
            "train.patience=null",
            "train.weighting.method=static",
            "train.weighting.weights={pits_left: 2.5}",
        ],
    )
    assert params.train.lr == pytest.approx(3e-4)
    assert params.train.patience is None
    assert params.train.weighting.method == "static"
    assert params.train.weighting_kwargs() == {"weights": {"pits_left": 2.5}}


def test_unknown_weighting_method_lists_available_ones():
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", ["train.weighting.method=gradnorm-ish"])
    assert "train.weighting" in str(err.value)
    assert "'equal'" in str(err.value) and "'static'" in str(err.value)


def test_static_weights_must_name_known_tasks():
    with pytest.raises(ConfigError, match=r"unknown tasks \['rust_left'\]"):
        load_params(
            REPO / "params.yaml",
            ["train.weighting.method=static", "train.weighting.weights={rust_left: 1}"],
        )


def test_cross_field_rules(tmp_path: Path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["split"] = {"train": 0.7, "val": 0.25, "test": 0.15}
    raw["model"]["shared_depth"] = 9
    raw["tasks"]["pits_left"] = {"kind": "ordinal"}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    message = str(err.value)
    assert "split: Value error, train + val + test must be 1" in message
    assert "shared_depth 9 exceeds backbone.depth 4" in message
    assert "tasks.pits_left: Value error, ordinal tasks need n_classes" in message


def test_malformed_override_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"train": {"lr": 1}}, ["train.lr.x=2"])
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["train.weighting={method: cagrad, c: lots}"],
            "  train.weighting.c: Input should be a valid number",
        ),
        (
            ["train.weighting={method: aligned_mtl, scale_mode: max}"],
            "  train.weighting.scale_mode:",
        ),
        (
            ["train.weighting={method: dwa, tau: 2}"],
            "  train.weighting.tau: Extra inputs are not permitted",
        ),
        (
            ["train.weighting={method: upgrad, c: 1}"],
            "  train.weighting.c: Extra inputs are not permitted",
        ),
    ],
)
def test_weighting_hyperparameters_are_typed_per_method(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", overrides)
    assert message in str(err.value)


def test_every_registered_weighting_method_is_configurable():
    from mtl_models.weighting import WEIGHTINGS

    for method in WEIGHTINGS.names():
        params = load_params(REPO / "params.yaml", [f"train.weighting={{method: {method}}}"])
        assert params.train.weighting.method == method
    params = load_params(REPO / "params.yaml", ["train.weighting={method: famo, lr: 0.01}"])
    assert params.train.weighting_kwargs() == {"lr": 0.01, "weight_decay": 1e-3}


def test_gradient_method_without_shared_blocks_is_refused_before_training():
    with pytest.raises(ConfigError, match=r"model\.shared_depth is 0"):
        load_params(REPO / "params.yaml", ["train.weighting.method=pcgrad", "model.shared_depth=0"])
    params = load_params(
        REPO / "params.yaml", ["train.weighting.method=uw", "model.shared_depth=0"]
    )
    assert params.model.shared_depth == 0  # loss methods do not need shared blocks


def test_sections_may_be_omitted_and_take_validated_defaults():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params = parse_params({"tasks": raw["tasks"], "train": {"epochs": 3}})
    assert params.train.weighting.method == "equal"
    assert params.train.weighting_kwargs() == {}
    assert params.split.train == pytest.approx(0.60)
    assert params.registry.alias == "champion"
