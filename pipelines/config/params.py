"""The whole of ``params.yaml``: the sections validated together, loading with ``--set``
overrides, and overlaying sampled or tuned values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from mtl_models.augment.effects import expand_remap
from mtl_models.losses import ClassWeighting
from mtl_models.nn.architectures import ARCHITECTURES
from mtl_models.tasks import TaskSpec
from mtl_models.weighting import WEIGHTINGS, build_weighting, check_weighting
from pipelines.config._base import Section, invalid_at
from pipelines.config.augment import AugmentConfig
from pipelines.config.data import DataConfig
from pipelines.config.model import ModelConfig
from pipelines.config.overrides import apply_overrides, set_path
from pipelines.config.sections import BaselinesConfig, RegisterConfig, TrackingConfig
from pipelines.config.split import SplitConfig
from pipelines.config.tasks import TaskConfig
from pipelines.config.train import TrainConfig
from pipelines.config.tune import TuneConfig
from pipelines.errors import ConfigError, MtlflowError
from pipelines.files import read_text

DEFAULT_PARAMS = Path("params.yaml")


class Params(Section):
    data: DataConfig = DataConfig()
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    split: SplitConfig = SplitConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    # ``register`` is a method of pydantic models, so the section lives under another name.
    registry: RegisterConfig = Field(RegisterConfig(), alias="register")
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _weights_name_tasks(self) -> Params:
        weights = getattr(self.train.weighting, "weights", None) or {}
        unknown = sorted(set(weights) - set(self.tasks))
        if unknown:
            raise ValueError(
                f"train.weighting.weights names unknown tasks {unknown}; "
                f"tasks: {sorted(self.tasks)}"
            )
        return self

    @model_validator(mode="after")
    def _remaps_permute_tasks(self) -> Params:
        for name, mapping in self.augment.remaps.items():
            try:
                expand_remap(mapping, list(self.tasks))
            except ValueError as exc:
                raise ValueError(f"augment.remaps.{name}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _weighting_fits_model_and_schedule(self) -> Params:
        method = self.train.weighting.method
        check_weighting(
            WEIGHTINGS.get(method),
            f"train.weighting.method '{method}'",
            shares_blocks=self.model.shares_parameters(),
            joint_batches=self.train.schedule == "joint",
        )
        try:  # its own checks on its hyperparameters (a negative static weight): cheap
            build_weighting(method, list(self.tasks), **self.train.weighting_kwargs())
        except ValueError as exc:
            raise invalid_at("Params", ("train", "weighting"), str(exc), method) from None
        return self

    def task_sensitivity(self) -> dict[str, dict[str, float]]:
        """Task -> {effect: largest tolerated magnitude}, in task order."""
        return {name: t.sensitivity() for name, t in self.tasks.items()}

    def task_specs(self) -> list[TaskSpec]:
        """Tasks as the model sees them (class weights are fitted later, on the train split)."""
        return [
            TaskSpec(
                name=name,
                kind=t.kind,
                n_classes=t.n_classes,
                column=None if t.column is None else str(t.column),
                classes=None if t.classes is None else tuple(t.classes),
                focal_gamma=self.focal_gamma(name),
            )
            for name, t in self.tasks.items()
        ]

    def class_weighting(self, task: str) -> ClassWeighting:
        """The task's class weighting: its own, else ``train.class_weighting``."""
        return self.tasks[task].class_weighting_or(self.train.class_weighting)

    def focal_gamma(self, task: str) -> float:
        """The task's focal gamma: its own, else ``train.focal_gamma`` (0 where the kind
        weighs no classes)."""
        return self.tasks[task].focal_gamma_or(self.train.focal_gamma)


def _union_tag(part: object) -> bool:
    """A weighting method's or an architecture's name in an error's path (the union's tag)."""
    return isinstance(part, str) and (part in WEIGHTINGS or part in ARCHITECTURES)


def params_dict(params: Params) -> dict[str, Any]:
    """The validated params as plain YAML-able data (``register`` under its file name)."""
    return params.model_dump(by_alias=True, mode="json")


def overlay(params: Params, values: Mapping[str, Any], source: str = "trial") -> Params:
    """``params`` with dotted ``values`` set on top, validated again (how trials apply samples).

    Choosing another weighting method (or architecture) drops the previous one's
    hyperparameters, which the new one would reject.
    """
    raw = params_dict(params)
    method = values.get("train.weighting.method")
    if method is not None and method != raw["train"]["weighting"]["method"]:
        raw["train"]["weighting"] = {"method": method}
    architecture = values.get("model.architecture.name")
    if architecture is not None and architecture != raw["model"]["architecture"]["name"]:
        raw["model"]["architecture"] = {"name": architecture}
    for key, value in values.items():
        set_path(raw, key, value)
    result = parse_params(raw, source=source, check_space=False)
    return result


def _describe(errors: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for err in errors:
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        shown = err["type"] != "missing" and not isinstance(err["input"], dict)
        got = f" (got {err['input']!r:.80})" if shown else ""
        lines.append(f"  {path}: {err['msg']}{got}")
    return "\n".join(lines)


def parse_params(
    raw: Mapping[str, Any], source: str = "params", check_space: bool = True
) -> Params:
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        errors = [
            # Discriminated unions put the method name in the path; drop it for readability.
            {**e, "loc": tuple(p for p in e["loc"] if not _union_tag(p))}
            for e in exc.errors(include_url=False)
        ]
        problems = tuple((".".join(map(str, e["loc"])), str(e["type"])) for e in errors)
        raise ConfigError(f"{source}: invalid parameters\n{_describe(errors)}", problems) from None
    if check_space and params.tune.enabled:  # a search that will not run blocks nothing
        # search_space overlays params itself: imported here, where both modules are loaded
        from pipelines.config.search_space import check_search_space

        check_search_space(params, source)
    return params


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping (YAML would keep the last one silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping: a second
    ``model:`` section would otherwise replace the first without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(
                    f"line {line}: key '{key}' is given twice (first on line {seen[key]}); "
                    "YAML would keep only the last, so merge them"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line, ``at line L, column C: <problem>``, without its multi-line
    message (which quotes the text and calls the file ``<unicode string>``)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    problem = problem or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    where = f"at line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + problem


def load_params(path: Path = DEFAULT_PARAMS, overrides: Sequence[str] = ()) -> Params:
    """Read, override and validate a params file; every entry point goes through here."""
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        # a SafeLoader subclass: no arbitrary objects
        raw = yaml.load(read_text(path), Loader=_UniqueKeyLoader) or {}
    except MtlflowError as exc:  # not UTF-8
        raise ConfigError(str(exc)) from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_params(apply_overrides(raw, overrides), source=str(path))
