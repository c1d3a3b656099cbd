from pathlib import Path

import pytest
import yaml

from pipelines.config import apply_overrides, load_params, params_dict, parse_params
from pipelines.errors import ConfigError
from tests.conftest import REPO


def test_shipped_params_are_valid_and_define_nine_ordinal_tasks():
    params = load_params(REPO / "params.yaml")
    assert len(params.tasks) == 9
    assert {t.kind for t in params.task_specs()} == {"ordinal"}
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
    assert "tasks.pits_left: Value error, an ordinal task needs n_classes >= 2" in message


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
    expected = r"shares none \(shared_depth=0\).*model\.shared_depth >= 1"
    with pytest.raises(ConfigError, match=expected):
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


# ---------------------------------------------------------------- augment and task effects


def _raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _invalid(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    return str(err.value)


def test_unknown_transform_names_its_group_and_suggests_the_close_one():
    raw = _raw()
    raw["augment"]["geometric"] = [{"name": "VerticalFlip"}, {"name": "HorizontalFlp", "p": 1}]
    message = _invalid(raw)
    assert "  augment.geometric: " in message
    assert "[1] unknown transform 'HorizontalFlp'; did you mean 'HorizontalFlip'?" in message


def test_transform_in_the_wrong_group_is_refused():
    raw = _raw()
    raw["augment"]["geometric"] = [{"name": "GaussNoise"}]
    message = _invalid(raw)
    assert "  augment.geometric: " in message
    assert "'GaussNoise' is a noise_blur transform, not geometric" in message
    raw["augment"]["geometric"] = []
    raw["augment"]["noise_blur"] = [{"name": "GaussNoise"}]
    assert parse_params(raw).augment.noise_blur[0].name == "GaussNoise"


def test_remap_of_a_random_transform_is_refused():
    raw = _raw()
    raw["augment"]["remaps"] = {"RandomRotate90": {"*_left": "*_right", "*_right": "*_left"}}
    message = _invalid(raw)
    assert "  augment.remaps: " in message
    assert "RandomRotate90 is random when it fires" in message


def test_remap_of_an_unknown_transform_is_refused():
    raw = _raw()
    raw["augment"]["remaps"] = {"HorizontalFlop": {"*_left": "*_right", "*_right": "*_left"}}
    message = _invalid(raw)
    assert "  augment.remaps: " in message
    assert "unknown transform 'HorizontalFlop'; did you mean 'HorizontalFlip'?" in message


def test_remap_naming_a_missing_task_is_refused():
    raw = _raw()
    raw["augment"]["remaps"] = {"HorizontalFlip": {"rust_left": "pits_right"}}
    message = _invalid(raw)
    assert "augment.remaps.HorizontalFlip: " in message
    assert "'rust_left', which does not exist" in message


def test_remap_that_is_not_a_permutation_is_refused():
    raw = _raw()
    raw["augment"]["remaps"] = {"HorizontalFlip": {"*_left": "*_right"}}
    message = _invalid(raw)
    assert "augment.remaps.HorizontalFlip: not a permutation" in message
    assert "pits_right" in message


def test_unknown_effect_in_a_task_names_the_task():
    raw = _raw()
    raw["tasks"]["scratches_left"]["sensitive_to"] = ["hflip", "hlfip"]
    message = _invalid(raw)
    assert "  tasks.scratches_left: " in message
    assert "unknown effect 'hlfip'; did you mean 'hflip'?" in message
    assert "tasks.pits_left" not in message


def test_effect_both_sensitive_and_invariant_names_the_task():
    raw = _raw()
    raw["tasks"]["pits_center"]["invariant_to"] = ["rotate"]
    message = _invalid(raw)
    assert "  tasks.pits_center: " in message
    assert "['rotate'] are declared both sensitive and invariant" in message


def test_sensitive_to_is_a_list_or_a_mapping():
    raw = _raw()
    raw["tasks"]["pits_left"]["sensitive_to"] = ["hflip", "rotate"]
    raw["tasks"]["pits_right"]["sensitive_to"] = {"rotate": 5, "blur": 3}
    raw["tasks"]["pits_center"]["invariant_to"] = ["crop"]
    params = parse_params(raw)
    assert params.tasks["pits_left"].sensitive_to == {"hflip": 0.0, "rotate": 0.0}
    assert params.tasks["pits_right"].sensitive_to == {"rotate": 5.0, "blur": 3.0}
    sensitivity = params.task_sensitivity()
    assert list(sensitivity) == list(params.tasks)
    assert sensitivity["pits_left"]["hflip"] == 0.0
    assert sensitivity["pits_right"]["rotate"] == 5.0
    assert sensitivity["pits_right"]["blur"] == 3.0  # tightened from the ordinal default of 5
    assert "crop" not in sensitivity["pits_center"]
    assert sensitivity["pits_left"]["crop"] == 0.0


def test_transform_entries_keep_albumentations_arguments():
    raw = _raw()
    raw["augment"]["geometric"] = [
        {"name": "Affine", "rotate": [-10, 10], "translate_percent": 0.05, "p": 0.3},
        {"name": "HorizontalFlip"},
    ]
    augment = parse_params(raw).augment
    affine, flip = augment.geometric
    assert affine.args() == {"p": 0.3, "rotate": [-10, 10], "translate_percent": 0.05}
    assert flip.args() == {"p": 0.5}  # the default probability
    assert [(g, i, e.name) for g, i, e in augment.entries()][:2] == [
        ("geometric", 0, "Affine"),
        ("geometric", 1, "HorizontalFlip"),
    ]


def test_transform_probability_is_validated():
    raw = _raw()
    raw["augment"]["photometric"] = [{"name": "ToGray", "p": 1.5}]
    assert "augment.photometric.0.p" in _invalid(raw)


def test_shipped_augment_section_loads():
    params = load_params(REPO / "params.yaml")
    augment = params.augment
    assert augment.enabled
    entries = augment.entries()
    assert len(entries) == 9
    assert [g for g, _, _ in entries].count("geometric") == 4
    assert {g for g, _, _ in entries} == {"geometric", "photometric", "noise_blur"}
    assert augment.remaps == {"HorizontalFlip": {"*_left": "*_right", "*_right": "*_left"}}
    sensitivity = params.task_sensitivity()
    assert sensitivity["scratches_left"]["hflip"] == 0.0
    assert "hflip" not in sensitivity["scratches_center"]


# ---------------------------------------------------------------- data, schedule and speed


def test_your_files_may_not_live_where_prepare_generates():
    message = _invalid({**_raw(), "data": {"source": "files"}})
    assert "data.dir data/raw is where `prepare` writes built-in data" in message
    params = parse_params({**_raw(), "data": {"source": "files", "dir": "data/mine"}})
    assert params.data.dir == "data/mine"
    assert "is generated into data/raw" in _invalid(
        {**_raw(), "data": {"source": "penguins", "dir": "elsewhere"}}
    )


def test_named_classes_set_the_class_count_and_must_match_it():
    raw = _raw()
    raw["augment"] = {"enabled": False}
    raw["tasks"] = {"colour": {"kind": "classification", "classes": ["red", "pink", "white"]}}
    assert parse_params(raw).task_specs()[0].n_classes == 3
    raw["tasks"]["colour"]["n_classes"] = 2
    assert "n_classes 2 but 3 classes are named" in _invalid(raw)
    raw["tasks"] = {"mass": {"kind": "regression", "classes": ["a", "b"]}}
    assert "a regression task takes no classes" in _invalid(raw)


def test_alternating_schedule_refuses_gradient_methods():
    with pytest.raises(ConfigError, match="trains one task per batch"):
        load_params(
            REPO / "params.yaml", ["train.schedule=alternating", "train.weighting.method=upgrad"]
        )
    params = load_params(REPO / "params.yaml", ["train.schedule=alternating"])
    assert params.train.schedule == "alternating"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.precision=fp16", "train.precision"),
        ("train.channels_last=maybe", "train.channels_last"),
        ("data.table=rows.xlsx", "data.table must be a .csv or .parquet file"),
        ("model.backbone.name=resnet", "unknown backbone 'resnet'"),
    ],
)
def test_speed_and_data_switches_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        load_params(REPO / "params.yaml", [override])


def test_a_named_backbone_takes_its_own_arguments_and_refuses_others(project):
    """Every argument of the named backbone reaches it (not only width and depth)."""
    from mtl_models.nn.model import build_model
    from pipelines.services.fitting import model_spec

    params, _ = project
    raw = params_dict(params)
    raw["model"]["backbone"] |= {"name": "cnn", "pool_size": 2}
    spec = model_spec(parse_params(raw), params.task_specs(), [])
    assert spec.backbone_args == {"width": 8, "depth": 2, "pool_size": 2}
    assert build_model(spec).pool[0].output_size == 2

    raw["model"]["backbone"] |= {"poolsize": 2}
    with pytest.raises(ConfigError, match=r"backbone 'cnn' takes no \['poolsize'\]"):
        parse_params(raw)
    raw["model"]["backbone"] = {"name": "auto", "pool_size": 2}
    with pytest.raises(ConfigError, match="need a named backbone, not 'auto'"):
        parse_params(raw)
