"""The ``data`` section of ``params.yaml``: where the data is and what a sample is made of
(README "Your own data")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.config._base import Section

if TYPE_CHECKING:
    from pipelines.data.sources import Source


class SyntheticDefects(Section):
    """Size and seed of a generated dataset (``image_size``: the defect images only;
    multimnist makes at most 2500 images, synthetic_signals ``n_samples / 3`` specimens of
    3 measurements)."""

    n_samples: int = Field(1500, ge=20)
    image_size: int = Field(64, ge=24, le=512)
    seed: int = 7


# A column of the data table: its header name, or its 0-based position (any table; the only
# way to name one when ``data.header`` is false).
ColumnRef = Annotated[str | int, Field(union_mode="left_to_right")]

GENERATED_DIR = "data/raw"


class ImageInputConfig(Section):
    """Image files named in a column, relative to ``root`` (itself relative to ``data.dir``)."""

    kind: Literal["image"]
    column: ColumnRef = "path"
    root: str = "."
    size: int | None = Field(
        None, ge=8, le=1024, description="resized to size x size; null = the generated size or 64"
    )
    channels: Literal[1, 3] = 1


class SignalInputConfig(Section):
    """Fixed-length 1-D signals, one channel each: a column of ``.npy`` paths (relative to
    ``root``) or of arrays (Parquet), or a folder of ``.npy`` files whose i-th name in sorted
    order is row i."""

    kind: Literal["signal"]
    columns: list[ColumnRef] = Field(default_factory=list)
    folders: list[str] = Field(default_factory=list)
    root: str = "."

    @model_validator(mode="after")
    def _one_layout(self) -> SignalInputConfig:
        if bool(self.columns) == bool(self.folders):
            raise ValueError("give a signal's channels as either columns or folders")
        return self


class FeaturesInputConfig(Section):
    """Table columns: numeric ones standardised, categorical ones one-hot encoded (both
    fitted on the training split, stored with the model, applied when serving)."""

    kind: Literal["features"]
    numeric: list[ColumnRef] = Field(default_factory=list)
    categorical: list[ColumnRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_columns(self) -> FeaturesInputConfig:
        if not self.numeric and not self.categorical:
            raise ValueError("a features input needs numeric and/or categorical columns")
        return self


InputConfig = Annotated[
    ImageInputConfig | SignalInputConfig | FeaturesInputConfig, Field(discriminator="kind")
]


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
    inputs: dict[str, InputConfig] = Field(
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

    def image_size(self, name: str) -> int:
        spec = self.inputs[name]
        assert isinstance(spec, ImageInputConfig)
        if spec.size is not None:
            return spec.size
        return _source(self.source).image_size(self) or 64
