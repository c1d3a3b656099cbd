"""``params.yaml`` -> validated, typed configuration: one module per section, the whole in
``params``, ``--set`` overrides in ``overrides``."""

from pipelines.config._base import Section
from pipelines.config.augment import AugmentConfig, TransformEntry
from pipelines.config.data import (
    ColumnRef,
    DataConfig,
    FeaturesInputConfig,
    ImageInputConfig,
    SignalInputConfig,
)
from pipelines.config.model import BackboneConfig, ModelConfig
from pipelines.config.overrides import apply_overrides, get_path, override_keys, set_path
from pipelines.config.params import (
    DEFAULT_PARAMS,
    Params,
    load_params,
    overlay,
    params_dict,
    parse_params,
)
from pipelines.config.search_space import check_search_space
from pipelines.config.sections import BaselinesConfig, RegisterConfig, TrackingConfig
from pipelines.config.split import SplitConfig
from pipelines.config.tasks import TaskConfig
from pipelines.config.train import AffinityConfig, TrainConfig, WeightingConfig
from pipelines.config.tune import (
    TUNABLE_SECTIONS,
    PrunerConfig,
    SamplerConfig,
    SearchEntry,
    TuneConfig,
)

__all__ = [
    "DEFAULT_PARAMS",
    "TUNABLE_SECTIONS",
    "AffinityConfig",
    "AugmentConfig",
    "BackboneConfig",
    "BaselinesConfig",
    "ColumnRef",
    "DataConfig",
    "FeaturesInputConfig",
    "ImageInputConfig",
    "ModelConfig",
    "Params",
    "PrunerConfig",
    "RegisterConfig",
    "SamplerConfig",
    "SearchEntry",
    "Section",
    "SignalInputConfig",
    "SplitConfig",
    "TaskConfig",
    "TrackingConfig",
    "TrainConfig",
    "TransformEntry",
    "TuneConfig",
    "WeightingConfig",
    "apply_overrides",
    "check_search_space",
    "get_path",
    "load_params",
    "overlay",
    "override_keys",
    "params_dict",
    "parse_params",
    "set_path",
]
