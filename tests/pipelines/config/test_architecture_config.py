"""``model.architecture``: typed hyperparameters derived from each architecture's signature,
a split it cannot use refused naming the keys, and a search over it."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import yaml

from mtl_models.inputs import ImageInput
from mtl_models.nn.architectures import ARCHITECTURES
from pipelines.config import Params, overlay
from pipelines.config import parse_params as parse
from pipelines.config.model import architecture_hyperparameters
from pipelines.errors import ConfigError
from pipelines.services.fitting import check_backbone, model_spec
from tests.conftest import REPO


def parse_params(model: dict[str, Any], space: dict[str, Any] | None = None) -> Params:
    """The shipped params with ``model`` entries overlaid and ``space`` as the search."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["model"] |= model
    raw["tune"]["search_space"] = space or {}
    return parse(raw)


def test_hard_sharing_is_the_default_and_the_spec_records_the_architecture() -> None:
    params = parse_params({})
    assert params.model.architecture.name == "hps"
    params = parse_params({"architecture": {"name": "ple", "task_experts": 2}, "shared_depth": 1})
    spec = model_spec(params, params.task_specs(), [ImageInput("image")])
    assert spec.architecture == "ple"
    assert spec.architecture_args == {"shared_experts": 2, "task_experts": 2}


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_every_architecture_is_configurable_with_its_own_defaults(name: str) -> None:
    params = parse_params({"architecture": {"name": name}, "shared_depth": 2})
    defaults = {p.name: p.default for p in architecture_hyperparameters(ARCHITECTURES.get(name))}
    assert params.model.architecture.args() == defaults


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"architecture": {"name": "mmoe"}},  # the shipped split shares all 4 blocks
            r"model: .*architecture\.name 'mmoe' with shared_depth 4 of backbone\.depth 4: "
            r"its experts are copies of the backbone blocks after the split point",
        ),
        (
            {"architecture": {"name": "cross_stitch"}, "shared_depth": None},
            r"architecture\.name 'cross_stitch' with shared_depth None .*task columns",
        ),
        (
            {"architecture": {"name": "mtan"}, "shared_depth": 0},
            r"architecture\.name 'mtan' with shared_depth 0 .*share at least one stage",
        ),
        (
            {"architecture": {"name": "mmoe", "expert": 3}, "shared_depth": 2},
            r"model\.architecture\.expert: Extra inputs are not permitted",
        ),
        (
            {"architecture": {"name": "moe"}},
            r"model\.architecture: .*'moe'.*expected tags: 'cgc', 'cross_stitch', 'dselect_k'",
        ),
        (
            {"architecture": {"name": "dselect_k", "k": "two"}, "shared_depth": 2},
            r"model\.architecture\.k: Input should be a valid integer",
        ),
    ],
)
def test_an_architecture_that_cannot_work_fails_naming_the_keys(
    model: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params(model)


def test_a_zoo_backbone_split_is_checked_against_the_architecture_before_training() -> None:
    """A zoo network's blocks are known once it is built: the preflight refuses there."""
    params = parse_params(
        {
            "backbone": {"name": "torchvision/squeezenet1_1"},
            "shared_depth": None,
            "architecture": {"name": "mmoe"},
        }
    )
    with pytest.raises(ConfigError, match=r"model\.architecture\.name 'mmoe' with model\."):
        check_backbone(params, [ImageInput("image", 64, 1)])


def test_the_architecture_and_its_hyperparameters_are_searchable() -> None:
    space = {
        "model.architecture.name": {"choices": ["hps", "mmoe", "dselect_k"]},
        "model.architecture.experts": {
            "low": 2,
            "high": 6,
            "when": {"model.architecture.name": ["mmoe", "dselect_k"]},
        },
    }
    params = parse_params({"shared_depth": 2}, space)
    assert params.tune.search_space["model.architecture.experts"].extremes() == [2, 6]


def test_a_hyperparameter_sampled_for_an_architecture_without_it_suggests_when() -> None:
    space = {
        "model.architecture.name": {"choices": ["hps", "mmoe"]},
        "model.architecture.experts": {"low": 2, "high": 6},
    }
    with pytest.raises(ConfigError) as err:
        parse_params({"shared_depth": 2}, space)
    takers = sorted(
        n
        for n, cls in ARCHITECTURES.items()
        if "experts" in inspect.signature(cls.__init__).parameters
    )
    assert str(err.value) == (
        "params: tune.search_space.model.architecture.experts: architecture 'hps' takes "
        f"no 'experts'; sample it only for one that does ({', '.join(takers)}), "
        f"e.g. when: {{model.architecture.name: {takers[0]}}}"
    )


def test_a_trial_switching_architecture_drops_the_previous_ones_keys() -> None:
    params = parse_params({"architecture": {"name": "cgc", "shared_experts": 3}, "shared_depth": 2})
    switched = overlay(params, {"model.architecture.name": "mmoe"})
    assert switched.model.architecture.args() == {"experts": 4}


def test_a_search_that_will_not_run_does_not_block_another_architecture() -> None:
    """The shipped search samples shared_depth up to 4, which experts cannot use; with the
    search off, an expert architecture at a lower split trains."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["model"] |= {"architecture": {"name": "mmoe"}, "shared_depth": 2}
    raw["tune"]["enabled"] = False
    assert parse(raw).model.architecture.name == "mmoe"
    raw["tune"]["enabled"] = True
    with pytest.raises(ConfigError, match=r"tune.search_space.model.shared_depth: 4 gives"):
        parse(raw)
