"""Input kinds, each through both of its paths: a data table read by ``read`` and a served
request decoded by ``decode_request`` must give the model the same arrays."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import mtl_models.inputs.features as features_module
import mtl_models.inputs.image as image_module
from mtl_models._registry import UnknownNameError
from mtl_models.inputs import INPUTS, ImageInput, InputSpec, InvalidRequest, ReadContext
from mtl_models.nn.backbones import BACKBONES
from mtl_models.nn.model import ModelSpec
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import batch_inputs
from pipelines.config import parse_params
from pipelines.data.dataset import Table, read_table
from pipelines.errors import ConfigError
from pipelines.serving import raw_request, request_inputs

N = 5


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_example(folder: Path) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N):
        (folder / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 256, (12, 12), np.uint8)))
        paths.append(f"{i}.png")
    return {"kind": "image", "column": "path", "size": 8}, {"path": paths}


def signal_example(folder: Path) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    rng = np.random.default_rng(1)
    columns: dict[str, list[Any]] = {"a": [], "b": []}
    for i in range(N):
        for channel, scale in (("a", 1.0), ("b", 50.0)):
            np.save(folder / f"{channel}{i}.npy", rng.normal(3.0, scale, 16))
            columns[channel].append(f"{channel}{i}.npy")
    return {"kind": "signal", "columns": ["a", "b"]}, columns


def features_example(folder: Path) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    config = {"kind": "features", "numeric": ["x", "y"], "categorical": ["colour"]}
    return config, {
        "x": ["1.5", "", "-2", "7", "0.25"],
        "y": ["10", "12", "11", "", "9"],
        "colour": ["red", "blue", "", "red", "7"],
    }


# every registered kind needs an example here: a new kind without one fails the test below
EXAMPLES: dict[str, Callable[[Path], tuple[dict[str, Any], dict[str, list[Any]]]]] = {
    "image": image_example,
    "signal": signal_example,
    "features": features_example,
}


def test_every_registered_input_kind_has_an_example() -> None:
    assert sorted(EXAMPLES) == INPUTS.names()


def read_example(kind: str, folder: Path) -> tuple[InputSpec, tuple[np.ndarray, ...], Table]:
    config, columns = EXAMPLES[kind](folder)
    pd.DataFrame(columns).to_csv(folder / "table.csv", index=False)
    table = read_table(folder / "table.csv", header=True, generated=False)
    cls = INPUTS.get(kind)
    spec, raw = cls.read("thing", cls.Config.model_validate(config), table, ReadContext(folder))
    return spec, raw, table


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_a_request_built_from_table_rows_decodes_to_the_table_arrays(
    kind: str, tmp_path: Path
) -> None:
    spec, raw, table = read_example(kind, tmp_path)
    fitted = spec.fit(*raw)
    from_table = fitted.encode(*raw)
    assert len(from_table) == N and from_table.shape[1:] == fitted.shape
    request = pd.DataFrame(fitted.to_request(from_table, table.frame))
    from_request = fitted.encode(*fitted.decode_request(request))
    assert from_request.dtype == from_table.dtype
    np.testing.assert_allclose(from_request, from_table, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_the_backbone_args_size_the_default_backbone(kind: str, tmp_path: Path) -> None:
    spec, raw, _ = read_example(kind, tmp_path)
    fitted = spec.fit(*raw)
    backbone = BACKBONES.get(fitted.backbone)(**fitted.backbone_args(), width=2, depth=1)
    batch = batch_inputs({"thing": fitted.encode(*raw)})
    out = backbone.build_pool()(torch.nn.Sequential(*backbone.build_blocks())(batch))
    assert out.shape == (N, backbone.out_features)


def test_an_unknown_kind_lists_the_available_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown input kind 'sound'; available: features"):
        INPUTS.get("sound")
    raw = {"data": {"inputs": {"clip": {"kind": "sound"}}}}
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert (
        "data.inputs.clip: Value error, unknown input kind 'sound'; "
        "available: features, image, signal" in str(err.value)
    )


def test_an_input_error_names_the_key_path() -> None:
    raw = {"data": {"inputs": {"photo": {"kind": "image", "size": 3}}}}
    with pytest.raises(ConfigError, match=r"data\.inputs\.photo\.size: Input should be greater"):
        parse_params(raw)


def test_table_and_request_decode_an_image_with_the_same_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (20, 14, 3), np.uint8)
    (tmp_path / "a.png").write_bytes(png_bytes(pixels))
    pd.DataFrame({"path": ["a.png"]}).to_csv(tmp_path / "table.csv", index=False)
    table = read_table(tmp_path / "table.csv", header=True, generated=False)
    calls: list[type] = []
    decode = image_module.decode_image

    def spy(source: bytes | Path, size: int, channels: int, *bound: int) -> np.ndarray:
        calls.append(type(source))
        return decode(source, size, channels, *bound)

    monkeypatch.setattr(image_module, "decode_image", spy)
    config = ImageInput.Config.model_validate({"kind": "image", "size": 10, "channels": 3})
    spec, (from_table,) = ImageInput.read("photo", config, table, ReadContext(tmp_path))
    request = pd.DataFrame({"photo": [base64.b64encode(png_bytes(pixels)).decode("ascii")]})
    (from_request,) = spec.decode_request(request)
    assert from_table.shape == (1, 10, 10, 3) and from_table.dtype == np.uint8
    np.testing.assert_array_equal(from_request, from_table)
    assert len(calls) == 2 and calls[1] is bytes  # the file, then the request's bytes


def test_table_and_request_parse_numbers_with_the_same_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[Any]] = []
    parse = features_module.parse_numbers

    def spy(cells: Any) -> tuple[np.ndarray, np.ndarray]:
        calls.append(list(cells))
        return parse(cells)

    monkeypatch.setattr(features_module, "parse_numbers", spy)
    spec, raw, _ = read_example("features", tmp_path)
    fitted = spec.fit(*raw)
    fitted.decode_request(pd.DataFrame({"x": [1.0], "y": [None], "colour": ["red"]}))
    assert calls[:2] == [["1.5", np.nan, "-2", "7", "0.25"], ["10", "12", "11", np.nan, "9"]]
    assert calls[2:] == [[1.0], [None]]


@pytest.mark.parametrize("value", ["long", float("inf")])
def test_a_request_number_that_a_table_would_refuse_is_refused(value: Any, tmp_path: Path) -> None:
    spec, raw, _ = read_example("features", tmp_path)
    request = pd.DataFrame({"x": [1.0, value], "y": [2.0, 3.0], "colour": ["red", None]})
    with pytest.raises(InvalidRequest, match=r"row 1: 'x' wants a number or null, not"):
        request_inputs(request, [spec.fit(*raw)])


def test_raw_request_joins_every_inputs_columns(tmp_path: Path) -> None:
    specs, arrays, rows = [], {}, []
    for kind in sorted(EXAMPLES):
        folder = tmp_path / kind
        folder.mkdir()
        spec, raw, table = read_example(kind, folder)
        fitted = spec.fit(*raw)
        specs.append(fitted)
        arrays[fitted.name + kind] = fitted.encode(*raw)
        rows.append(table.frame)
    renamed = [replace(s, name=s.name + s.kind) for s in specs]
    model = ModelSpec(tasks=(TaskSpec("t", "binary"),), backbone="auto", inputs=tuple(renamed))
    request = raw_request(model, arrays, pd.concat(rows, axis=1).iloc[:2])
    assert len(request) == 2
    assert list(request.columns) == ["x", "y", "colour", "thingimage", "a", "b"]
    decoded = request_inputs(request, renamed)
    for name, array in decoded.items():
        np.testing.assert_allclose(array, arrays[name][:2], rtol=1e-5, atol=1e-6)
