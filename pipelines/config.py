"""``params.yaml`` -> validated, typed configuration (pydantic), with ``--set`` overrides."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_type_hints

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from mtl_models.backbones import BACKBONES
from mtl_models.effects import (
    GROUPS,
    check_remappable,
    check_transform,
    expand_remap,
    task_sensitivity,
)
from mtl_models.tasks import TaskKind, TaskSpec
from mtl_models.weighting import WEIGHTINGS
from pipelines.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticDefects(Section):
    n_samples: int = Field(1500, ge=20)
    image_size: int = Field(64, ge=24, le=512)
    seed: int = 7


class DataConfig(Section):
    source: Literal["synthetic_defects"] = "synthetic_defects"
    synthetic: SyntheticDefects = SyntheticDefects()


class TaskConfig(Section):
    kind: TaskKind
    column: str | None = None
    n_classes: int | None = Field(None, ge=2)
    # Augmentation effects this label does not survive, beyond its kind's defaults:
    # a list (any amount changes the label) or {effect: largest tolerated magnitude}.
    sensitive_to: dict[str, float] = Field(default_factory=dict)
    invariant_to: list[str] = Field(default_factory=list, description="lifts kind defaults")

    @field_validator("sensitive_to", mode="before")
    @classmethod
    def _list_means_none_tolerated(cls, value: Any) -> Any:
        return dict.fromkeys(value, 0.0) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _known_effects(self) -> TaskConfig:
        self.sensitivity()  # raises naming an unknown or contradictory effect
        return self

    def sensitivity(self) -> dict[str, float]:
        return task_sensitivity(self.kind, self.sensitive_to, self.invariant_to)

    @model_validator(mode="after")
    def _classes_match_kind(self) -> TaskConfig:
        if self.kind in (TaskKind.CLASSIFICATION, TaskKind.ORDINAL) and self.n_classes is None:
            raise ValueError(f"{self.kind.value} tasks need n_classes")
        if self.kind is TaskKind.REGRESSION and self.n_classes is not None:
            raise ValueError("a regression task takes no n_classes")
        if self.kind is TaskKind.BINARY and self.n_classes not in (None, 2):
            raise ValueError("a binary task has n_classes 2")
        return self


class SplitConfig(Section):
    train: float = Field(0.60, gt=0, lt=1)
    val: float = Field(0.25, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class BackboneConfig(Section):
    name: str = "cnn"
    width: int = Field(32, ge=1)
    depth: int = Field(4, ge=1, le=8)

    @model_validator(mode="after")
    def _known(self) -> BackboneConfig:
        BACKBONES.get(self.name)  # raises, listing the available backbones
        return self


class ModelConfig(Section):
    backbone: BackboneConfig = BackboneConfig()
    shared_depth: int | None = Field(None, ge=0, description="blocks shared by all tasks")
    head_hidden: int = Field(64, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _split_inside_backbone(self) -> ModelConfig:
        if self.shared_depth is not None and self.shared_depth > self.backbone.depth:
            raise ValueError(
                f"shared_depth {self.shared_depth} exceeds backbone.depth {self.backbone.depth}"
            )
        return self


def _weighting_union() -> Any:
    """One config model per registered weighting method, built from its typed ``__init__``.

    The registry stays the single source of methods and hyperparameters: a method added to
    ``mtl_models.weighting`` is configurable and validated here without further code.
    """
    models = []
    for name, cls in WEIGHTINGS.items():
        hints = get_type_hints(cls.__init__)
        fields: dict[str, Any] = {"method": (Literal[name], ...)}
        for param in inspect.signature(cls.__init__).parameters.values():
            if param.name in ("self", "task_names"):
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (hints[param.name], default)
        models.append(create_model(f"{cls.__name__}Config", __base__=Section, **fields))
    return Annotated[Union[tuple(models)], Field(discriminator="method")]  # noqa: UP007


WeightingConfig = _weighting_union()


class TrainConfig(Section):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int | None = Field(8, ge=1, description="epochs without improvement; null = off")
    seed: int = 0
    device: str = "auto"
    num_workers: int = Field(
        0, ge=0, description="DataLoader processes running augmentation; 0 = in the trainer"
    )
    weighting: WeightingConfig = Field(
        default_factory=lambda: {"method": "equal"}, validate_default=True
    )

    def weighting_kwargs(self) -> dict[str, Any]:
        return self.weighting.model_dump(exclude={"method"})


class TransformEntry(BaseModel):
    """An albumentations transform: ``name``, ``p`` and the transform's own arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    p: float = Field(0.5, ge=0, le=1)

    def args(self) -> dict[str, Any]:
        return {"p": self.p, **(self.model_extra or {})}


class AugmentConfig(Section):
    """Requested train-time augmentation; the resolver keeps what every task's label survives."""

    enabled: bool = True
    geometric: list[TransformEntry] = Field(default_factory=list)
    photometric: list[TransformEntry] = Field(default_factory=list)
    noise_blur: list[TransformEntry] = Field(default_factory=list)
    # transform name -> {source task: destination task}, ``*`` patterns allowed
    remaps: dict[str, dict[str, str]] = Field(default_factory=dict)
    preview_samples: int = Field(4, ge=1, le=16, description="rows of the preview grid")

    @field_validator(*GROUPS)
    @classmethod
    def _known_transforms(cls, entries: list[TransformEntry], info: ValidationInfo) -> Any:
        for i, entry in enumerate(entries):
            try:
                check_transform(entry.name, info.field_name)
            except ValueError as exc:
                raise ValueError(f"[{i}] {exc}") from None
        return entries

    @field_validator("remaps")
    @classmethod
    def _remappable(cls, remaps: dict[str, dict[str, str]]) -> Any:
        for name in remaps:
            check_remappable(name)
        return remaps

    def entries(self) -> list[tuple[str, int, TransformEntry]]:
        return [(g, i, e) for g in GROUPS for i, e in enumerate(getattr(self, g))]


class RegisterConfig(Section):
    model_name: str = "mtlflow-defects"
    alias: str = "champion"


class TrackingConfig(Section):
    uri: str = Field("sqlite:///mlflow.db", description="overridden by MLFLOW_TRACKING_URI")
    experiment: str = "mtlflow"


class Params(Section):
    data: DataConfig = DataConfig()
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    split: SplitConfig = SplitConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
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
    def _gradient_methods_need_shared_blocks(self) -> Params:
        method = WEIGHTINGS.get(self.train.weighting.method)
        if method.needs_task_gradients and self.model.shared_depth == 0:
            raise ValueError(
                f"train.weighting.method '{self.train.weighting.method}' combines per-task "
                "gradients of the shared blocks, but model.shared_depth is 0 (nothing shared)"
            )
        return self

    def task_sensitivity(self) -> dict[str, dict[str, float]]:
        """Task -> {effect: largest tolerated magnitude}, in task order."""
        return {name: t.sensitivity() for name, t in self.tasks.items()}

    def task_specs(self) -> list[TaskSpec]:
        return [
            TaskSpec(name=name, kind=t.kind, n_classes=t.n_classes, column=t.column)
            for name, t in self.tasks.items()
        ]


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values parse as YAML (``3e-4``, ``null``, ``[1, 2]``)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
        node = raw
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section"
                )
            node = child
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def _describe(errors: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for err in errors:
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        shown = err["type"] != "missing" and not isinstance(err["input"], dict)
        got = f" (got {err['input']!r:.80})" if shown else ""
        lines.append(f"  {path}: {err['msg']}{got}")
    return "\n".join(lines)


def parse_params(raw: Mapping[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        errors = [
            # Discriminated unions put the method name in the path; drop it for readability.
            {**e, "loc": tuple(p for p in e["loc"] if p not in WEIGHTINGS)}
            for e in exc.errors(include_url=False)
        ]
        raise ConfigError(f"{source}: invalid parameters\n{_describe(errors)}") from None


def load_params(path: Path = DEFAULT_PARAMS, overrides: Sequence[str] = ()) -> Params:
    """Read, override and validate a params file; every entry point goes through here."""
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_params(apply_overrides(raw, overrides), source=str(path))
