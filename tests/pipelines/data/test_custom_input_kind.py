"""A new input kind plugs in at run time, without editing the project: registered here, it is
accepted by params validation, read by ``read_dataset``, sized for its backbone by
``build_model`` and decoded from a served request."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_models.inputs import (
    INPUTS,
    ColumnRef,
    InputConfig,
    InputError,
    InputSpec,
    InvalidRequest,
    Raw,
    ReadContext,
    TableSource,
    parse_numbers,
)
from mtl_models.nn.backbones import MLP, Fusion
from mtl_models.nn.model import ModelSpec, build_backbone, build_model
from mtl_models.train.loaders import batch_inputs
from pipelines.config import parse_params
from pipelines.data.dataset import fit_and_encode, read_dataset
from pipelines.errors import ConfigError, DataError
from pipelines.serving import request_inputs


class ScalarConfig(InputConfig):
    kind: Literal["scalar"]
    column: ColumnRef


@dataclass(frozen=True)
class ScalarInput(InputSpec):
    """One numeric column, centred on the training mean: float ``[N, 1]``."""

    kind = "scalar"
    Config = ScalarConfig
    backbone = "mlp"
    fusion_depth = 1

    column: str = ""
    mean: float = 0.0

    @property
    def shape(self) -> tuple[int, ...]:
        return (1,)

    @classmethod
    def read(
        cls, name: str, config: ScalarConfig, table: TableSource, context: ReadContext
    ) -> tuple[ScalarInput, Raw]:
        column = table.column(config.column, f"data.inputs.{name}.column")
        values, bad = parse_numbers(table.cells(column))
        if len(bad) or np.isnan(values).any():
            raise InputError(f"{table.source}: {table.row(int(np.isnan(values).argmax()))} bad")
        return cls(name, column), (values,)

    def fit(self, *raw: np.ndarray) -> ScalarInput:
        return replace(self, mean=float(raw[0].mean()))

    def encode(self, *raw: np.ndarray) -> np.ndarray:
        return (raw[0] - self.mean).astype(np.float32)[:, None]

    def decode_request(self, frame: pd.DataFrame) -> Raw:
        values, bad = parse_numbers(list(frame[self.column]))
        if len(bad) or np.isnan(values).any():
            raise InvalidRequest(f"row {int(np.isnan(values).argmax())}: '{self.column}' bad")
        return (values,)

    def to_request(self, encoded: np.ndarray, rows: pd.DataFrame) -> dict[str, list[Any]]:
        return {self.column: (encoded[:, 0] + self.mean).tolist()}

    def backbone_args(self) -> dict[str, int]:
        return {"in_features": 1}


@pytest.fixture
def scalar_kind() -> Iterator[type[ScalarInput]]:
    INPUTS.register("scalar")(ScalarInput)
    try:
        yield ScalarInput
    finally:
        INPUTS.unregister("scalar")


def params_for(root: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {"source": "files", "dir": "mine", "table": "table.csv", "inputs": inputs},
        "tasks": {"big": {"kind": "binary"}},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
        "augment": {"enabled": False},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "scalar"},
    }


def write_table(root: Path, n: int = 20) -> pd.DataFrame:
    (root / "mine").mkdir()
    rng = np.random.default_rng(0)
    weight = rng.normal(50.0, 10.0, n).round(2)
    frame = pd.DataFrame(
        {"weight": weight, "length": rng.normal(size=n).round(3), "big": (weight > 50).astype(int)}
    )
    frame.to_csv(root / "mine" / "table.csv", index=False)
    return frame


def test_a_kind_registered_at_run_time_reads_trains_and_serves(
    scalar_kind: type[ScalarInput], tmp_path: Path
) -> None:
    frame = write_table(tmp_path)
    params = parse_params(params_for(tmp_path, {"w": {"kind": "scalar", "column": "weight"}}))
    assert isinstance(params.data.inputs["w"], ScalarConfig)
    assert params.data.augmentable_inputs() == []

    dataset = read_dataset(params, tmp_path)
    assert dataset.specs == {"w": ScalarInput("w", "weight")}
    np.testing.assert_array_equal(dataset.raw["w"][0], frame["weight"].to_numpy())
    index = {"train": np.arange(12), "val": np.arange(12, 16), "test": np.arange(16, 20)}
    specs, encoded = fit_and_encode(dataset, index)
    assert specs["w"].mean == pytest.approx(frame["weight"][:12].mean())

    spec = ModelSpec(tasks=tuple(params.task_specs()), backbone="auto", inputs=(specs["w"],))
    backbone = build_backbone(spec)
    assert isinstance(backbone, MLP) and backbone.in_features == 1
    model = build_model(spec).eval()
    request = pd.DataFrame(specs["w"].to_request(encoded["val"]["w"], frame.iloc[12:16]))
    served = request_inputs(request, spec.inputs)
    np.testing.assert_allclose(served["w"], encoded["val"]["w"], atol=1e-5)
    with torch.no_grad():
        outputs = model(batch_inputs(served))
    assert outputs["big"].shape == (4, 1)
    with pytest.raises(InvalidRequest, match="row 1: 'weight' bad"):
        request_inputs(request.assign(weight=[1.0, "heavy", 2.0, 3.0]), spec.inputs)


def test_a_run_time_kind_joins_a_fusion_and_its_errors_reach_the_user(
    scalar_kind: type[ScalarInput], tmp_path: Path
) -> None:
    frame = write_table(tmp_path)
    inputs = {
        "w": {"kind": "scalar", "column": "weight"},
        "tab": {"kind": "features", "numeric": ["length"]},
    }
    params = parse_params(params_for(tmp_path, inputs))
    dataset = read_dataset(params, tmp_path)
    specs, encoded = fit_and_encode(dataset, {"train": np.arange(20)})
    spec = ModelSpec(
        tasks=tuple(params.task_specs()),
        backbone="auto",
        backbone_args={"width": 2, "depth": 1},
        inputs=tuple(specs.values()),
    )
    assert isinstance(build_backbone(spec), Fusion)
    outputs = build_model(spec)(batch_inputs(encoded["train"]))
    assert outputs["big"].shape == (20, 1)

    with pytest.raises(ValueError, match=r"backbone 'cnn' cannot read input 'w' \(scalar\)"):
        build_model(replace(spec, backbone="cnn", inputs=(specs["w"],)))
    with pytest.raises(ConfigError, match=r"data\.inputs\.w\.column: Field required"):
        parse_params(params_for(tmp_path, {"w": {"kind": "scalar"}}))
    frame.assign(weight=["x", *frame["weight"][1:]]).to_csv(tmp_path / "mine" / "table.csv")
    with pytest.raises(DataError, match=r"table\.csv: row 2 bad"):
        read_dataset(params, tmp_path)


def test_once_unregistered_the_kind_is_unknown_again(tmp_path: Path) -> None:
    assert "scalar" not in INPUTS
    with pytest.raises(ConfigError, match="unknown input kind 'scalar'; available: features"):
        parse_params(params_for(tmp_path, {"w": {"kind": "scalar", "column": "weight"}}))
