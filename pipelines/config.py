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
    PrivateAttr,
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
from mtl_models.losses import ClassWeighting
from mtl_models.tasks import TaskKind, TaskSpec
from mtl_models.weighting import WEIGHTINGS
from pipelines.config_base import Section
from pipelines.config_data import ColumnRef as ColumnRef  # re-exported: the data section
from pipelines.config_data import DataConfig
from pipelines.config_data import FeaturesInputConfig as FeaturesInputConfig
from pipelines.config_data import ImageInputConfig as ImageInputConfig
from pipelines.config_data import SignalInputConfig as SignalInputConfig
from pipelines.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


class TaskConfig(Section):
    kind: TaskKind
    column: ColumnRef | None = None
    n_classes: int | None = Field(None, ge=2)
    # label values by class index, for labels written as names (e.g. [Adelie, Chinstrap,
    # Gentoo]); sets n_classes. Without it, labels are the integers 0..n_classes-1.
    classes: list[str] | None = Field(None, min_length=2)
    # Augmentation effects this label does not survive, beyond its kind's defaults:
    # a list (any amount changes the label) or {effect: largest tolerated magnitude}.
    sensitive_to: dict[str, float] = Field(default_factory=dict)
    invariant_to: list[str] = Field(default_factory=list, description="lifts kind defaults")
    # class imbalance, per task; unset = train.class_weighting / train.focal_gamma
    class_weighting: ClassWeighting | None = None
    focal_gamma: float | None = Field(None, ge=0)

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
        if self.classes is not None:
            if self.kind is TaskKind.REGRESSION:
                raise ValueError("a regression task takes no classes")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be distinct, got {self.classes}")
            if self.n_classes not in (None, len(self.classes)):
                raise ValueError(
                    f"n_classes {self.n_classes} but {len(self.classes)} classes are named"
                )
            object.__setattr__(self, "n_classes", len(self.classes))
        if self.kind in (TaskKind.CLASSIFICATION, TaskKind.ORDINAL) and self.n_classes is None:
            raise ValueError(f"{self.kind.value} tasks need n_classes")
        if self.kind is TaskKind.REGRESSION and self.n_classes is not None:
            raise ValueError("a regression task takes no n_classes")
        if self.kind is TaskKind.BINARY and self.n_classes not in (None, 2):
            raise ValueError("a binary task has n_classes 2")
        if self.kind is TaskKind.REGRESSION and (
            self.class_weighting not in (None, "none") or self.focal_gamma
        ):
            raise ValueError("a regression task takes no class_weighting or focal_gamma")
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
    # auto: cnn for one image input, cnn1d for one signal, mlp for features, fusion for several
    name: str = "auto"
    width: int = Field(32, ge=1)
    depth: int = Field(4, ge=1, le=8)

    @model_validator(mode="after")
    def _known(self) -> BackboneConfig:
        if self.name != "auto":
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


class AffinityConfig(Section):
    """Lookahead inter-task affinity measured during training (README "Task affinity")."""

    enabled: bool = False
    every: int = Field(25, ge=1, description="measure on every k-th training batch")
    lr: float | None = Field(None, gt=0, description="lookahead step; null = the current lr")
    samples: int | None = Field(
        8, ge=1, description="first n samples of the batch measured on; null = all"
    )
    max_groups: int = Field(3, ge=1, description="task groups the grouping suggestion may use")


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
    # Class imbalance within each discrete task (README "Rare classes"); a task's own
    # class_weighting / focal_gamma wins. Regression tasks are never weighted.
    class_weighting: ClassWeighting = "none"
    focal_gamma: float = Field(0.0, ge=0, description="0 = plain cross-entropy")
    affinity: AffinityConfig = AffinityConfig()
    # joint: every batch trains every task labelled in it; alternating: tasks take turns,
    # each batch drawn from the rows labelled for its task (README "Your own data")
    schedule: Literal["joint", "alternating"] = "joint"
    # GPU speed (README "Speed"): auto = bf16 autocast and channels-last images on CUDA,
    # plain fp32 on CPU; compile = torch.compile the forward pass
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: Literal["auto"] | bool = "auto"
    compile: bool = False

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


Scalar = bool | int | float | str | None


class SearchEntry(Section):
    """One tuned parameter: a range (``low``/``high``, optional ``log``/``step``) or ``choices``.

    ``when`` makes it conditional on parameters sampled before it (or fixed in params), e.g.
    ``when: {train.weighting.method: static}``; a list there means any of its values.
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Scalar] | None = None
    type: Literal["int", "float", "categorical"] | None = None
    when: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or raw.get("type") is not None:
            return raw
        if raw.get("choices") is not None:
            return {**raw, "type": "categorical"}
        ints = all(isinstance(raw.get(k), int) for k in ("low", "high"))
        ints = ints and isinstance(raw.get("step", 1), int)
        return {**raw, "type": "int" if ints else "float"}

    @model_validator(mode="after")
    def _valid_range(self) -> SearchEntry:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("choices is empty; list at least one value")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or give choices)")
        if not self.low < self.high:
            raise ValueError(f"empty range: low {self.low:g} must be below high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna samples one or the other)")
        ends = (self.low, self.high, self.step or 1)
        if self.type == "int" and not all(float(v).is_integer() for v in ends):
            raise ValueError("an int range needs whole-number low, high and step")
        return self

    def extremes(self) -> list[Any]:
        """The values whose validity stands for the whole entry (both ends, or every choice)."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in (self.choices or [])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        low, high = float(self.low or 0), float(self.high or 0)
        if not low <= value <= high:
            return False
        if self.step is None:
            return True
        steps = (value - low) / self.step
        return abs(steps - round(steps)) < 1e-9

    def applies(self, values: Mapping[str, Any]) -> bool:
        for key, wanted in self.when.items():
            options = wanted if isinstance(wanted, list) else [wanted]
            if values.get(key) not in options:
                return False
        return True


class SamplerConfig(Section):
    name: Literal["tpe", "nsga2", "random"] = "tpe"
    n_startup_trials: int = Field(4, ge=0, description="random trials before TPE models (tpe)")
    population_size: int = Field(8, ge=2, description="individuals per generation (nsga2)")


class PrunerConfig(Section):
    name: Literal["median", "successive_halving", "none"] = "median"
    n_startup_trials: int = Field(2, ge=0, description="trials run in full before pruning (median)")
    n_warmup_epochs: int = Field(2, ge=0, description="epochs of a trial never pruned (median)")
    min_resource: int = Field(1, ge=1, description="epochs before the first rung (halving)")
    reduction_factor: int = Field(3, ge=2, description="keep 1 in this many per rung (halving)")


# Sections a trial may change; data, split and tasks stay fixed so every trial is comparable.
TUNABLE_SECTIONS = ("model", "train", "augment")


class TuneConfig(Section):
    enabled: bool = True
    n_trials: int = Field(8, ge=1, description="finished trials the study aims for, in total")
    epochs: int = Field(6, ge=1, description="training epochs per trial")
    objective: Literal["mean_score", "per_task"] = "mean_score"
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    seed: int = 0
    # Any SQLAlchemy URL; several `mtlflow tune` processes or machines may share one study.
    storage: str = "sqlite:///optuna.db"
    study_name: str | None = Field(None, description="default: derived from the tuned params")
    heartbeat_seconds: int = Field(
        20, ge=1, description="a trial silent for twice this long is marked failed"
    )
    enqueue_defaults: bool = Field(True, description="trial 0 uses params.yaml's own values")
    search_space: dict[str, SearchEntry] = Field(default_factory=dict)


class BaselinesConfig(Section):
    """``mtlflow baselines``: one single-task model per task, for Δm (README "Baselines")."""

    enabled: bool = Field(
        False, description="train them in `dvc repro`/`mtlflow run` (one training per task)"
    )


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
    tune: TuneConfig = TuneConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    # ``register`` is a method of pydantic models, so the section lives under another name.
    registry: RegisterConfig = Field(RegisterConfig(), alias="register")
    tracking: TrackingConfig = TrackingConfig()
    # keys given as ``--set`` overrides: they win over tuned values (``reports/best_params.yaml``)
    _overridden: frozenset[str] = PrivateAttr(frozenset())

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
    def _gradient_methods_need_tasks_together(self) -> Params:
        method = WEIGHTINGS.get(self.train.weighting.method)
        if method.needs_task_gradients and self.train.schedule == "alternating":
            raise ValueError(
                f"train.weighting.method '{self.train.weighting.method}' combines the tasks' "
                "gradients within a batch, but train.schedule 'alternating' trains one task "
                "per batch; use schedule 'joint' or a loss-based method"
            )
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
        t = self.tasks[task]
        if t.kind is TaskKind.REGRESSION:
            return "none"
        return t.class_weighting or self.train.class_weighting

    def focal_gamma(self, task: str) -> float:
        t = self.tasks[task]
        if t.kind is TaskKind.REGRESSION:
            return 0.0
        return t.focal_gamma if t.focal_gamma is not None else self.train.focal_gamma


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw["a"]["b"]["c"] = value`` for ``key="a.b.c"``, creating sections on the way."""
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def get_path(raw: Mapping[str, Any], key: str) -> Any:
    """The value at ``a.b.c``; raises ``KeyError`` naming the key when it is absent."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def override_keys(overrides: Sequence[str]) -> list[str]:
    return [item.partition("=")[0].strip() for item in overrides]


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values parse as YAML (``3e-4``, ``null``, ``[1, 2]``)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
        try:
            set_path(raw, key.strip(), yaml.safe_load(value))
        except ConfigError as exc:
            raise ConfigError(f"override {item!r}: {exc}") from None
    return raw


def params_dict(params: Params) -> dict[str, Any]:
    """The validated params as plain YAML-able data (``register`` under its file name)."""
    return params.model_dump(by_alias=True, mode="json")


def overlay(params: Params, values: Mapping[str, Any], source: str = "trial") -> Params:
    """``params`` with dotted ``values`` set on top, validated again (how trials apply samples).

    Choosing another weighting method drops the previous method's hyperparameters, which the
    new one would reject.
    """
    raw = params_dict(params)
    method = values.get("train.weighting.method")
    if method is not None and method != raw["train"]["weighting"]["method"]:
        raw["train"]["weighting"] = {"method": method}
    for key, value in values.items():
        set_path(raw, key, value)
    result = parse_params(raw, source=source, check_space=False)
    result._overridden = params._overridden
    return result


def check_search_space(params: Params, source: str) -> None:
    """Every entry of ``tune.search_space`` gives valid params at each end of its range.

    Runs when params are loaded, so a bad entry fails before any trial. ``when`` conditions
    are set to their first accepted value while their entry is checked.
    """
    space = params.tune.search_space
    if not space:
        return
    base = params_dict(params)
    base["tune"]["search_space"] = {}
    plain = parse_params(base, source=source, check_space=False)
    seen: set[str] = set()
    for key, entry in space.items():
        where = f"{source}: tune.search_space.{key}"
        if key.split(".")[0] not in TUNABLE_SECTIONS:
            raise ConfigError(
                f"{where}: only {', '.join(TUNABLE_SECTIONS)} parameters can be tuned "
                "(data, split and tasks stay fixed so trials are comparable)"
            )
        conditions: dict[str, Any] = {}
        for cond, wanted in entry.when.items():
            if cond in space and cond not in seen:
                raise ConfigError(f"{where}: `when` names {cond}, which must be listed before it")
            if cond not in space:
                try:
                    get_path(base, cond)
                except KeyError:
                    raise ConfigError(f"{where}: `when` names {cond}, not a parameter") from None
            conditions[cond] = wanted[0] if isinstance(wanted, list) else wanted
        seen.add(key)
        for value in entry.extremes():
            try:
                overlay(plain, {**conditions, key: value}, source=source)
            except ConfigError as exc:
                detail = str(exc).partition("\n")[2] or str(exc)
                hyper = key.split(".")[2] if key.startswith("train.weighting.") else "method"
                if hyper != "method" and f"train.weighting.{hyper}: Extra inputs" in detail:
                    method = overlay(plain, conditions).train.weighting.method
                    takers = [
                        name
                        for name, cls in WEIGHTINGS.items()
                        if hyper in inspect.signature(cls.__init__).parameters
                    ]
                    hint = (
                        f"e.g. when: {{train.weighting.method: {takers[0]}}}"
                        if takers
                        else "no weighting method takes it"
                    )
                    raise ConfigError(
                        f"{where}: weighting method '{method}' takes no '{hyper}'; sample it "
                        f"only for a method that does ({', '.join(takers) or 'none'}), {hint}"
                    ) from None
                if "Extra inputs are not permitted" in detail or "is a value" in detail:
                    raise ConfigError(f"{where}: no such parameter\n{detail}") from None
                raise ConfigError(f"{where}: {value!r} gives invalid params\n{detail}") from None


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
            {**e, "loc": tuple(p for p in e["loc"] if p not in WEIGHTINGS)}
            for e in exc.errors(include_url=False)
        ]
        raise ConfigError(f"{source}: invalid parameters\n{_describe(errors)}") from None
    if check_space:
        check_search_space(params, source)
    return params


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
    params = parse_params(apply_overrides(raw, overrides), source=str(path))
    params._overridden = frozenset(override_keys(overrides))
    return params
