"""The ``tune`` section: search-space validation, overlays, study names, best params, sampling."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from pydantic import ValidationError

from mtl_models.train.trainer import EpochLog
from pipelines.config import (
    TUNABLE_SECTIONS,
    Params,
    SearchEntry,
    load_params,
    overlay,
    override_keys,
    params_dict,
    parse_params,
)
from pipelines.errors import ConfigError
from pipelines.services.best_params import apply_best_params, study_name, write_best_params
from pipelines.services.study import default_values as _defaults
from pipelines.services.trials import Objective, PruneOnScore, TrialConfigError, sample
from tests.conftest import REPO, tiny_params_dict, write_params

# ---------------------------------------------------------------------------- helpers


def shipped_raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def parse_with_space(space: dict[str, Any], **sections: Any) -> Params:
    """The shipped params.yaml with ``tune.search_space`` replaced (and sections merged in)."""
    raw = shipped_raw()
    for name, values in sections.items():
        raw[name] |= values
    raw["tune"]["search_space"] = space
    return parse_params(raw, "params.yaml")


def space_error(space: dict[str, Any], **sections: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse_with_space(space, **sections)
    return str(err.value)


def epoch_log(epoch: int, val_score: float) -> EpochLog:
    return EpochLog(
        epoch=epoch,
        train_loss=1.0,
        task_losses={},
        weights={},
        val_metrics={},
        val_score=val_score,
        seconds=0.1,
        is_best=True,
    )


# ---------------------------------------------------------------------------- SearchEntry


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ({"low": 1, "high": 4}, "int"),
        ({"low": 1, "high": 4, "step": 1}, "int"),
        ({"low": 1, "high": 4.0}, "float"),
        ({"low": 1.0, "high": 4}, "float"),
        ({"low": 1e-4, "high": 1e-2, "log": True}, "float"),
        ({"low": 0, "high": 1, "step": 0.25}, "float"),  # a float step forces float
        ({"choices": [1, 2, 3]}, "categorical"),
        ({"choices": ["equal", "dwa"]}, "categorical"),
        ({"low": 1, "high": 4, "type": "float"}, "float"),  # explicit type wins
    ],
)
def test_search_entry_infers_its_type(raw, kind):
    assert SearchEntry.model_validate(raw).type == kind


def test_int_entry_extremes_are_ints():
    ends = SearchEntry(low=2, high=6).extremes()
    assert ends == [2, 6]
    assert all(type(v) is int for v in ends)


def test_float_entry_extremes_are_floats():
    ends = SearchEntry(low=0, high=1, step=0.5).extremes()
    assert ends == [0.0, 1.0]
    assert all(type(v) is float for v in ends)


def test_categorical_extremes_are_every_choice():
    assert SearchEntry(choices=[32, 64, 128]).extremes() == [32, 64, 128]


def test_range_contains_its_ends_and_nothing_outside():
    entry = SearchEntry(low=0.1, high=0.3)
    assert entry.contains(0.1) and entry.contains(0.2) and entry.contains(0.3)
    assert not entry.contains(0.05)
    assert not entry.contains(0.31)
    assert not entry.contains(None)
    assert not entry.contains("0.2")


def test_range_does_not_contain_booleans():
    assert not SearchEntry(low=0, high=2).contains(True)


def test_categorical_contains_only_its_choices():
    entry = SearchEntry(choices=["equal", "dwa"])
    assert entry.contains("dwa")
    assert not entry.contains("static")
    assert not entry.contains(None)


def test_entry_without_when_always_applies():
    assert SearchEntry(low=0, high=1).applies({})


def test_when_with_a_scalar_value_applies_only_on_that_value():
    entry = SearchEntry(low=0.5, high=2, when={"train.weighting.method": "static"})
    assert entry.applies({"train.weighting.method": "static"})
    assert not entry.applies({"train.weighting.method": "equal"})
    assert not entry.applies({})


def test_when_with_a_list_applies_on_any_listed_value():
    entry = SearchEntry(low=0, high=2, when={"train.weighting.method": ["dwa", "famo"]})
    assert entry.applies({"train.weighting.method": "dwa"})
    assert entry.applies({"train.weighting.method": "famo"})
    assert not entry.applies({"train.weighting.method": "equal"})


def test_when_with_several_conditions_needs_all_of_them():
    entry = SearchEntry(low=0, high=1, when={"a.b": 1, "c.d": ["x", "y"]})
    assert entry.applies({"a.b": 1, "c.d": "y"})
    assert not entry.applies({"a.b": 1, "c.d": "z"})
    assert not entry.applies({"a.b": 2, "c.d": "x"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}, "log and step cannot"),
        ({"low": 1.5, "high": 4, "type": "int"}, "whole-number"),
        ({"choices": [1, 2], "low": 1, "high": 2}, "either choices or low/high"),
        ({"low": 1}, "needs low and high"),
    ],
)
def test_search_entry_rejects_contradictory_settings(raw, message):
    with pytest.raises(ValidationError, match=message):
        SearchEntry.model_validate(raw)


def test_int_entry_rejects_a_fractional_step():
    with pytest.raises(ValidationError):
        SearchEntry(low=1, high=4, step=0.5, type="int")


# ---------------------------------------------------------------------------- bad search spaces


def test_unknown_parameter_names_the_entry():
    message = space_error({"train.lrr": {"low": 1e-3, "high": 1e-2}})
    assert "tune.search_space.train.lrr" in message
    assert "no such parameter" in message


def test_key_below_a_value_is_no_such_parameter():
    message = space_error({"train.lr.x": {"low": 1, "high": 2}})
    assert "tune.search_space.train.lr.x: no such parameter" in message


@pytest.mark.parametrize(("low", "high"), [(1e-3, 1e-3), (1e-2, 1e-3)])
def test_empty_range_names_the_entry(low, high):
    message = space_error({"train.lr": {"low": low, "high": high}})
    assert "tune.search_space.train.lr" in message
    assert "empty range" in message


def test_empty_choices_names_the_entry():
    message = space_error({"model.head_hidden": {"choices": []}})
    assert "tune.search_space.model.head_hidden" in message
    assert "choices is empty" in message


@pytest.mark.parametrize("low", [0, -1e-3])
def test_log_range_needs_a_positive_low(low):
    message = space_error({"train.lr": {"low": low, "high": 1e-2, "log": True}})
    assert "tune.search_space.train.lr" in message
    assert "log range needs low > 0" in message


def test_static_weight_for_an_unknown_task_names_the_entry_and_the_task():
    message = space_error(
        {
            "train.weighting.weights.nope": {
                "low": 0.5,
                "high": 2,
                "when": {"train.weighting.method": "static"},
            }
        }
    )
    assert "tune.search_space.train.weighting.weights.nope" in message
    assert "unknown tasks ['nope']" in message
    assert "takes no 'weights'" not in message


def test_static_weight_for_a_known_task_is_accepted():
    params = parse_with_space(
        {
            "train.weighting.method": {"choices": ["equal", "static"]},
            "train.weighting.weights.pits_left": {
                "low": 0.5,
                "high": 2.0,
                "when": {"train.weighting.method": "static"},
            },
        }
    )
    entry = params.tune.search_space["train.weighting.weights.pits_left"]
    assert entry.when == {"train.weighting.method": "static"}


def test_weight_without_when_under_equal_method_suggests_when():
    message = space_error(
        {"train.weighting.weights.pits_left": {"low": 0.5, "high": 2}},
        train={"weighting": {"method": "equal"}},
    )
    assert "tune.search_space.train.weighting.weights.pits_left" in message
    assert "'equal' takes no 'weights'" in message
    assert "when: {train.weighting.method: static}" in message


def test_method_hyperparameter_without_when_is_rejected():
    message = space_error(
        {
            "train.weighting.method": {"choices": ["equal", "dwa"]},
            "train.weighting.temperature": {"low": 0.5, "high": 4.0},
        },
        train={"weighting": {"method": "equal"}},
    )
    assert "tune.search_space.train.weighting.temperature" in message
    assert "takes no 'temperature'" in message


def test_method_hyperparameter_with_when_is_accepted():
    params = parse_with_space(
        {
            "train.weighting.method": {"choices": ["equal", "dwa"]},
            "train.weighting.temperature": {
                "low": 0.5,
                "high": 4.0,
                "when": {"train.weighting.method": "dwa"},
            },
        }
    )
    assert list(params.tune.search_space) == [
        "train.weighting.method",
        "train.weighting.temperature",
    ]


@pytest.mark.parametrize(
    "key",
    ["data.synthetic.seed", "split.seed", "tasks.pits_left.n_classes", "tune.epochs"],
)
def test_only_tunable_sections_can_be_searched(key):
    assert key.split(".")[0] not in TUNABLE_SECTIONS
    message = space_error({key: {"low": 2, "high": 3}})
    assert "tune.search_space" in message
    assert key in message
    assert "only model, train, augment parameters can be tuned" in message


def test_when_naming_an_entry_listed_later_is_rejected():
    message = space_error(
        {
            "train.weighting.weights.pits_left": {
                "low": 0.5,
                "high": 2,
                "when": {"train.weighting.method": "static"},
            },
            "train.weighting.method": {"choices": ["equal", "static"]},
        }
    )
    assert "tune.search_space" in message
    assert "train.weighting.weights.pits_left" in message
    assert "`when` names train.weighting.method, which must be listed before it" in message


def test_when_naming_no_parameter_is_rejected():
    message = space_error({"train.lr": {"low": 1e-3, "high": 1e-2, "when": {"train.nothing": 1}}})
    assert "tune.search_space.train.lr" in message
    assert "`when` names train.nothing, not a parameter" in message


def test_range_end_giving_invalid_params_names_the_entry_and_the_value():
    depth = shipped_raw()["model"]["backbone"]["depth"]
    message = space_error({"model.shared_depth": {"low": 1, "high": depth + 2}})
    assert f"tune.search_space.model.shared_depth: {depth + 2} gives invalid params" in message
    assert f"exceeds backbone.depth {depth}" in message


def test_choice_giving_invalid_params_names_the_entry():
    message = space_error({"model.head_hidden": {"choices": [16, -1]}})
    assert "tune.search_space.model.head_hidden: -1 gives invalid params" in message
    assert "model.head_hidden" in message.partition("\n")[2]


def test_unknown_weighting_method_among_the_choices_names_the_entry():
    message = space_error({"train.weighting.method": {"choices": ["equal", "no-such-method"]}})
    assert "tune.search_space.train.weighting.method" in message


def test_unknown_weighting_method_among_the_choices_names_the_bad_choice():
    message = space_error({"train.weighting.method": {"choices": ["equal", "no-such-method"]}})
    assert "no-such-method" in message
    assert "takes no 'method'" not in message


@pytest.mark.parametrize(
    "space",
    [
        {"split.seed": {"low": 1, "high": 3}},
        {
            "train.lr": {"low": 1e-3, "high": 1e-2, "when": {"model.dropout": 0.1}},
            "model.dropout": {"low": 0.0, "high": 0.3},
        },
    ],
)
def test_every_entry_error_reads_tune_search_space_dot_key(space):
    key = next(iter(space))
    assert f"tune.search_space.{key}" in space_error(space)


def test_parse_without_check_space_skips_the_range_checks():
    raw = shipped_raw()
    raw["tune"]["search_space"] = {"train.lrr": {"low": 1e-3, "high": 1e-2}}
    params = parse_params(raw, "params.yaml", check_space=False)
    assert "train.lrr" in params.tune.search_space


# ---------------------------------------------------------------------------- shipped params


def test_shipped_params_yaml_validates_with_a_search_space():
    params = load_params(REPO / "params.yaml")
    space = params.tune.search_space
    assert space
    assert all(key.split(".")[0] in TUNABLE_SECTIONS for key in space)
    assert all(entry.type in ("int", "float", "categorical") for entry in space.values())


# ---------------------------------------------------------------------------- overlay


def test_overlay_sets_nested_values_and_validates(project):
    params, _ = project
    result = overlay(params, {"model.backbone.width": 12, "train.lr": 0.01, "model.dropout": 0.2})
    assert result.model.backbone.width == 12
    assert result.train.lr == pytest.approx(0.01)
    assert result.model.dropout == pytest.approx(0.2)
    # the rest is untouched, and the original is not modified
    assert result.model.backbone.depth == params.model.backbone.depth
    assert params.model.backbone.width == 8


def test_overlay_parses_values_as_their_field_type(project):
    params, _ = project
    result = overlay(params, {"train.lr": 1})
    assert isinstance(result.train.lr, float)


def test_overlay_switching_method_drops_the_old_hyperparameters(project):
    params, _ = project
    dwa = overlay(params, {"train.weighting.method": "dwa", "train.weighting.temperature": 3.5})
    assert dwa.train.weighting_kwargs() == {"temperature": 3.5}
    equal = overlay(dwa, {"train.weighting.method": "equal"})
    assert equal.train.weighting.method == "equal"
    assert equal.train.weighting_kwargs() == {}


def test_overlay_switching_from_static_drops_the_weights(project):
    params, _ = project
    static = overlay(
        params,
        {"train.weighting.method": "static", "train.weighting.weights": {"pits_left": 2.0}},
    )
    assert static.train.weighting_kwargs() == {"weights": {"pits_left": 2.0}}
    switched = overlay(static, {"train.weighting.method": "uw"})
    assert switched.train.weighting.method == "uw"
    assert switched.train.weighting_kwargs() == {}


def test_overlay_keeping_the_method_keeps_its_hyperparameters(project):
    params, _ = project
    dwa = overlay(params, {"train.weighting.method": "dwa", "train.weighting.temperature": 3.5})
    same = overlay(dwa, {"train.weighting.method": "dwa", "model.dropout": 0.2})
    assert same.train.weighting_kwargs() == {"temperature": 3.5}


def test_overlay_switching_method_and_setting_the_new_ones_hyperparameter(project):
    params, _ = project
    static = overlay(
        params,
        {"train.weighting.method": "static", "train.weighting.weights": {"pits_left": 2.0}},
    )
    dwa = overlay(static, {"train.weighting.method": "dwa", "train.weighting.temperature": 1.5})
    assert dwa.train.weighting_kwargs() == {"temperature": 1.5}


def test_invalid_overlay_raises_config_error_naming_the_source(project):
    params, _ = project
    with pytest.raises(ConfigError, match=r"my source: invalid parameters[\s\S]*exceeds"):
        overlay(params, {"model.shared_depth": 9}, source="my source")


def test_overlay_of_an_unknown_key_raises(project):
    params, _ = project
    with pytest.raises(ConfigError, match=r"train\.lrr"):
        overlay(params, {"train.lrr": 0.1})


def test_override_keys_are_the_dotted_keys_given():
    assert override_keys(["train.lr=0.01", " model.dropout =0.2"]) == ["train.lr", "model.dropout"]


# ---------------------------------------------------------------------------- study_name


def tiny_name(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None) -> str:
    raw = tiny_params_dict(tmp_path)
    if change is not None:
        change(raw)
    return study_name(parse_params(raw, "params.yaml"))


def test_study_name_is_stable_for_the_same_params(tmp_path):
    name = tiny_name(tmp_path)
    assert name == tiny_name(tmp_path)
    assert re.fullmatch(r"mtlflow-[0-9a-f]{10}", name)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split("/")

    def change(raw: dict[str, Any]) -> None:
        node = raw
        for part in parents:
            node = node[part]
        node[last] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _set("tune/search_space/train.lr", {"low": 1e-4, "high": 5e-3, "log": True}),
        _set("tune/search_space/model.dropout", {"low": 0.0, "high": 0.5}),
        _set("tune/search_space/model.backbone.width", {"choices": [8, 16]}),
        _set("model/backbone/width", 12),
        _set("model/dropout", 0.2),
        _set("tune/epochs", 3),
        _set("train/batch_size", 16),
    ],
    ids=[
        "lr-range",
        "dropout-range",
        "new-entry",
        "backbone-width",
        "model-dropout",
        "tune-epochs",
        "batch-size",
    ],
)
def test_study_name_changes_with_what_trials_depend_on(tmp_path, change):
    assert tiny_name(tmp_path, change) != tiny_name(tmp_path)


@pytest.mark.parametrize(
    "change",
    [
        _set("tune/n_trials", 50),
        _set("tune/storage", "sqlite:///elsewhere.db"),
        _set("tune/enabled", False),
        _set("tune/heartbeat_seconds", 99),
        _set("train/epochs", 99),
        _set("train/device", "cpu"),
        _set("tracking/uri", "sqlite:///other.db"),
        _set("tracking/experiment", "another"),
        _set("register/model_name", "another-model"),
    ],
    ids=[
        "n_trials",
        "storage",
        "enabled",
        "heartbeat",
        "train-epochs",
        "device",
        "tracking-uri",
        "tracking-experiment",
        "register",
    ],
)
def test_study_name_ignores_what_trials_do_not_depend_on(tmp_path, change):
    assert tiny_name(tmp_path, change) == tiny_name(tmp_path)


def test_explicit_study_name_is_used_verbatim(tmp_path):
    assert tiny_name(tmp_path, _set("tune/study_name", "My Study 1")) == "My Study 1"


# ---------------------------------------------------------------------------- sample, _defaults


WEIGHTED_SPACE = {
    "train.weighting.method": SearchEntry(choices=["equal", "static"]),
    "train.weighting.weights.pits_left": SearchEntry(
        low=0.5, high=2.0, when={"train.weighting.method": "static"}
    ),
    "model.shared_depth": SearchEntry(low=1, high=2),
}


def test_sample_draws_a_conditional_entry_when_its_condition_holds(project):
    params, _ = project
    trial = optuna.trial.FixedTrial(
        {
            "train.weighting.method": "static",
            "train.weighting.weights.pits_left": 1.5,
            "model.shared_depth": 2,
        }
    )
    values = sample(trial, WEIGHTED_SPACE, params_dict(params))
    assert values == {
        "train.weighting.method": "static",
        "train.weighting.weights.pits_left": 1.5,
        "model.shared_depth": 2,
    }
    assert list(values) == list(WEIGHTED_SPACE)  # declaration order
    applied = overlay(params, values)
    assert applied.train.weighting_kwargs() == {"weights": {"pits_left": 1.5}}
    assert applied.model.shared_depth == 2


def test_sample_skips_a_conditional_entry_when_its_condition_fails(project):
    params, _ = project
    # FixedTrial raises on any parameter it was not given, so sampling the weight would fail
    trial = optuna.trial.FixedTrial({"train.weighting.method": "equal", "model.shared_depth": 1})
    values = sample(trial, WEIGHTED_SPACE, params_dict(params))
    assert values == {"train.weighting.method": "equal", "model.shared_depth": 1}


def test_sample_reads_conditions_not_in_the_space_from_the_base_params(project):
    params, _ = project
    assert params.model.backbone.name == "cnn"
    space = {
        "model.dropout": SearchEntry(low=0.0, high=0.3, when={"model.backbone.name": "cnn"}),
        "model.head_hidden": SearchEntry(
            choices=[8, 16], when={"model.backbone.name": ["other", "resnet"]}
        ),
    }
    trial = optuna.trial.FixedTrial({"model.dropout": 0.25})
    assert sample(trial, space, params_dict(params)) == {"model.dropout": 0.25}


def test_sample_returns_ints_for_int_entries():
    space = {"model.backbone.width": SearchEntry(low=4, high=16, step=4)}
    values = sample(optuna.trial.FixedTrial({"model.backbone.width": 8}), space, {})
    assert values == {"model.backbone.width": 8}
    assert type(values["model.backbone.width"]) is int


def test_defaults_are_the_params_own_values_inside_their_ranges(project):
    params, _ = project
    space = params.tune.search_space
    assert params.model.head_hidden == 16
    assert not space["model.head_hidden"].contains(16)  # tiny params: 16 not among the choices
    defaults = _defaults(params)
    assert "model.head_hidden" not in defaults
    expected = {
        "train.lr": params.train.lr,
        "train.batch_size": params.train.batch_size,
        "model.shared_depth": params.model.shared_depth,
        "model.dropout": params.model.dropout,
        "train.weighting.method": params.train.weighting.method,
    }
    assert defaults == {k: v for k, v in expected.items() if k in space}
    assert set(defaults) == set(space) - {"model.head_hidden"}


def test_defaults_skip_conditional_entries_whose_condition_fails(tmp_path):
    raw = tiny_params_dict(tmp_path)
    raw["train"]["weighting"] = {"method": "equal"}
    raw["tune"]["search_space"] = {
        "train.weighting.method": {"choices": ["equal", "static"]},
        "train.weighting.weights.pits_left": {
            "low": 0.5,
            "high": 2.0,
            "when": {"train.weighting.method": "static"},
        },
    }
    assert _defaults(parse_params(raw)) == {"train.weighting.method": "equal"}


def test_defaults_include_conditional_entries_whose_condition_holds(tmp_path):
    raw = tiny_params_dict(tmp_path)
    raw["train"]["weighting"] = {"method": "dwa", "temperature": 3.0}
    raw["tune"]["search_space"] = {
        "train.weighting.method": {"choices": ["equal", "dwa"]},
        "train.weighting.temperature": {
            "low": 1.0,
            "high": 4.0,
            "when": {"train.weighting.method": "dwa"},
        },
    }
    assert _defaults(parse_params(raw)) == {
        "train.weighting.method": "dwa",
        "train.weighting.temperature": 3.0,
    }


# ---------------------------------------------------------------------------- apply_best_params


def best(values: dict[str, Any]) -> dict[str, Any]:
    return {"study": "s", "trial": 3, "value": 0.5, "params": values}


def test_tuned_values_are_applied(project, capsys):
    params, paths = project
    content = best({"train.lr": 0.004, "model.shared_depth": 2, "train.weighting.method": "uw"})
    write_best_params(paths, content)
    tuned, read = apply_best_params(params, paths)
    assert tuned.train.lr == pytest.approx(0.004)
    assert tuned.model.shared_depth == 2
    assert tuned.train.weighting.method == "uw"
    assert read == content
    assert "train.lr=0.004" in capsys.readouterr().out


def test_best_params_file_has_a_header_and_round_trips(project):
    _, paths = project
    content = best({"train.lr": 0.004})
    write_best_params(paths, content)
    text = paths.best_params.read_text()
    assert text.startswith("#")
    assert yaml.safe_load(text) == content


def test_tuned_keys_no_longer_searched_are_ignored(project):
    params, paths = project
    assert "model.backbone.width" not in params.tune.search_space
    write_best_params(paths, best({"train.lr": 0.004, "model.backbone.width": 64}))
    tuned, _ = apply_best_params(params, paths)
    assert tuned.train.lr == pytest.approx(0.004)
    assert tuned.model.backbone.width == params.model.backbone.width


def test_only_unsearched_keys_apply_nothing(project):
    params, paths = project
    write_best_params(paths, best({"model.backbone.width": 64}))
    tuned, content = apply_best_params(params, paths)
    assert content is None
    assert params_dict(tuned) == params_dict(params)


def test_set_overrides_win_over_tuned_values(project):
    _, paths = project
    params = load_params(paths.root / "params.yaml", overrides=["train.lr=0.01"])
    write_best_params(paths, best({"train.lr": 0.004, "model.shared_depth": 2}))
    tuned, content = apply_best_params(params, paths, override_keys(["train.lr=0.01"]))
    assert tuned.train.lr == pytest.approx(0.01)
    assert tuned.model.shared_depth == 2
    assert content is not None
    # without the overridden keys, the tuned value wins
    assert apply_best_params(params, paths)[0].train.lr == pytest.approx(0.004)


@pytest.mark.parametrize(
    "override",
    ["train.weighting={method: uw}", "train.weighting.weights.pits_left=3"],
)
def test_set_override_of_the_weighting_survives_a_tuned_method(project, override):
    _, paths = project
    raw = tiny_params_dict(paths.root)
    raw["train"]["weighting"] = {"method": "static", "weights": {"pits_left": 2.0}}
    raw["tune"]["search_space"]["train.weighting.method"] = {"choices": ["equal", "dwa"]}
    params = load_params(write_params(paths.root, raw), overrides=[override])
    expected = params.train.weighting
    write_best_params(paths, best({"train.weighting.method": "dwa"}))
    tuned, _ = apply_best_params(params, paths, override_keys([override]))
    assert tuned.train.weighting == expected


def test_disabled_tune_applies_nothing(project):
    _, paths = project
    params = load_params(paths.root / "params.yaml", overrides=["tune.enabled=false"])
    write_best_params(paths, best({"train.lr": 0.004}))
    tuned, content = apply_best_params(params, paths)
    assert content is None
    assert tuned.train.lr == pytest.approx(params.train.lr)
    assert params_dict(tuned) == params_dict(params)


def test_no_best_params_file_leaves_params_unchanged(project):
    params, paths = project
    assert not paths.best_params.exists()
    tuned, content = apply_best_params(params, paths)
    assert content is None
    assert params_dict(tuned) == params_dict(params)


def test_skipped_tune_file_applies_nothing(project):
    params, paths = project
    write_best_params(paths, {"study": None, "skipped": "tune.enabled is false", "params": {}})
    tuned, content = apply_best_params(params, paths)
    assert content is None
    assert params_dict(tuned) == params_dict(params)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("study: s\nparams: [1, 2]\n", "expected a mapping"),
        ("params: {train.lr: [unclosed\n", "not valid YAML"),
    ],
    ids=["list", "params-not-mapping", "not-yaml"],
)
def test_malformed_best_params_file_names_the_file(project, text, message):
    params, paths = project
    paths.best_params.parent.mkdir(parents=True, exist_ok=True)
    paths.best_params.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(str(paths.best_params))) as err:
        apply_best_params(params, paths)
    assert message in str(err.value)


def test_tuned_value_giving_invalid_params_names_the_file(project):
    params, paths = project
    write_best_params(paths, best({"model.shared_depth": 9}))
    with pytest.raises(ConfigError, match=re.escape(str(paths.best_params))):
        apply_best_params(params, paths)


# ---------------------------------------------------------------------------- Objective


def fake_split() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((4, 32, 32, 3), np.uint8), np.zeros((4, 9))


def test_trial_params_apply_the_values_and_the_tune_epochs(project):
    params, _ = project
    objective = Objective(params, fake_split(), fake_split())
    trial_params = objective.trial_params({"model.dropout": 0.25, "model.shared_depth": 2})
    assert trial_params.model.dropout == pytest.approx(0.25)
    assert trial_params.model.shared_depth == 2
    assert trial_params.train.epochs == params.tune.epochs != params.train.epochs


def test_invalid_sampled_combination_raises_trial_config_error(tmp_path):
    raw = tiny_params_dict(tmp_path)
    raw["tune"]["search_space"] = {
        "model.shared_depth": {"low": 0, "high": 2},
        "train.weighting.method": {"choices": ["equal", "pcgrad"]},
    }
    params = parse_params(raw, "params.yaml")  # each entry alone is valid
    objective = Objective(params, fake_split(), fake_split())
    assert objective.trial_params({"model.shared_depth": 0, "train.weighting.method": "equal"})
    with pytest.raises(TrialConfigError, match=r"shares none \(shared_depth=0\)"):
        objective.trial_params({"model.shared_depth": 0, "train.weighting.method": "pcgrad"})


def test_trial_config_error_is_not_a_config_error():
    # tune catches TrialConfigError per trial; a ConfigError must stop the whole study
    assert not issubclass(TrialConfigError, ConfigError)


# ---------------------------------------------------------------------------- PruneOnScore


def test_prune_on_score_reports_and_prunes_below_the_threshold():
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        PruneOnScore(trial).on_epoch_end(epoch_log(1, 0.5))
    assert study.trials[0].intermediate_values == {1: 0.5}


def test_prune_on_score_never_prunes_after_the_last_epoch():
    # the trial has trained in full by then: it completes with its score, not as pruned
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask()
    callback = PruneOnScore(trial, epochs=2)
    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        callback.on_epoch_end(epoch_log(1, 0.5))
    callback.on_epoch_end(epoch_log(2, 0.5))
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.5}


def test_prune_on_score_lets_a_good_trial_continue():
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(lower=0.0))
    trial = study.ask()
    callback = PruneOnScore(trial)
    callback.on_epoch_end(epoch_log(1, 0.5))
    callback.on_epoch_end(epoch_log(2, 0.6))
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.6}
