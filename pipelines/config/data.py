"""The ``data`` section of ``params.yaml``: where the data is and what a sample is made of
(README "Your own data")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, PlainValidator, field_validator, model_validator

from mtl_models.inputs import (
    INPUTS,
    ColumnRef,
    FeaturesInputConfig,
    ImageInputConfig,
    InputConfig,
    SignalInputConfig,
)
from pipelines.config._base import Section

if TYPE_CHECKING:
    from pipelines.data.sources import Source

__all__ = [
    "GENERATED_DIR",
    "ColumnRef",
    "DataConfig",
    "FeaturesInputConfig",
    "ImageInputConfig",
    "InputEntry",
    "SignalInputConfig",
    "SyntheticDefects",
]


class SyntheticDefects(Section):
    """Size and seed of a generated dataset (``image_size``: the defect images only;
    multimnist makes at most 2500 images, synthetic_signals ``n_samples / 3`` specimens of
    3 measurements)."""

    n_samples: int = Field(1500, ge=20)
    image_size: int = Field(64, ge=24, le=512)
    seed: int = 7


GENERATED_DIR = "data/raw"


def _input_config(raw: object) -> InputConfig:
    """An input entry validated by its kind's own schema, looked up when params are read
    (so a kind registered at run time is accepted like the built-in ones)."""
    if isinstance(raw, InputConfig):
        return raw
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ValueError(f"an input needs a kind, one of: {', '.join(INPUTS.names())}")
    return INPUTS.get(raw["kind"]).Config.model_validate(raw)


# ``data.inputs.<name>``: its kind's config (an error names the key, e.g. data.inputs.image.size)
InputEntry = Annotated[Any, PlainValidator(_input_config)]


def _source(name: str) -> Source:
    from pipelines.data.sources import SOURCES  # the sources import their writers' libraries

    return SOURCES.get(name)()


class DataConfig(Section):
    # generated into data/raw by `prepare`, or `files`: your own, under `dir`
    # a registered source (pipelines/data/sources): generated into data/raw by `prepare`, or
    # `files`: your own, under `dir`
    source: str = "synthetic_defects"
    synthetic: SyntheticDefects = SyntheticDefects()
    dir: str = Field(GENERATED_DIR, description="the dataset folder (a DVC dependency of split)")
    table: str = Field("manifest.csv", description="in dir: one row per sample, .csv or .parquet")
    header: bool = Field(True, description="false: the CSV's first line is a sample")
    group: ColumnRef | None = Field(None, description="rows sharing it stay in one split")
    inputs: dict[str, InputEntry] = Field(
        default_factory=lambda: {"image": {"kind": "image"}}, validate_default=True, min_length=1
    )

    @field_validator("source")
    @classmethod
    def _registered(cls, name: str) -> str:
        _source(name)  # raises, listing the available sources
        return name

    @model_validator(mode="after")
    def _generated_into_raw(self) -> DataConfig:
        generated = _source(self.source).generated
        if not generated and Path(self.dir) == Path(GENERATED_DIR):
            raise ValueError(
                f"data.dir {self.dir} is where `prepare` writes built-in data (and replaces "
                "what is there): keep your files in another folder, e.g. data/mine"
            )
        if generated and self.dir != GENERATED_DIR:
            raise ValueError(
                f"data.source '{self.source}' is generated into {GENERATED_DIR}; "
                f"set data.source: files to read {self.dir}"
            )
        if not self.table.endswith((".csv", ".parquet")):
            raise ValueError(f"data.table must be a .csv or .parquet file, got '{self.table}'")
        return self

    def augmentable_inputs(self) -> list[str]:
        """The inputs label-safe image augmentation applies to, in params order."""
        return [n for n, c in self.inputs.items() if INPUTS.get(c.kind).augmentable]

    def image_size(self, name: str) -> int:
        """The size the (augmentable) image input ``name`` is resized to."""
        spec = self.inputs[name]
        if not INPUTS.get(spec.kind).augmentable:
            raise ValueError(f"input '{name}' ({spec.kind}) is not an image input")
        if spec.size is not None:
            return int(spec.size)
        return self.default_image_size

    @property
    def default_image_size(self) -> int:
        """The size of images whose entry leaves ``size`` null: the generated size or 64."""
        return _source(self.source).image_size(self) or 64
