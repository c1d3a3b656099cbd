"""One of each plug-in, registered at run time by this test and nowhere in the project: a task
kind, an input kind, a backbone and a data source go through prepare, split, train and
serving without editing any project file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from torch import nn

from mtl_models.inputs import INPUTS
from mtl_models.kinds import KINDS
from mtl_models.nn.backbones import BACKBONES, Backbone
from pipelines import stages
from pipelines.config import Params, parse_params
from pipelines.data.sources import SOURCES, Source
from pipelines.files import ProjectPaths
from pipelines.serving import Predictor
from tests.mtl_models.kinds.test_kinds import Count
from tests.pipelines.data.test_custom_input_kind import ScalarInput

pytestmark = pytest.mark.slow


class OneLayer(Backbone):
    """A single Linear-ReLU block over a few numbers."""

    reads: ClassVar[frozenset[str]] = frozenset({"scalar"})

    def __init__(self, in_features: int, width: int = 8, depth: int = 1):
        self.in_features, self.width, self.depth = in_features, width, 1

    def build_blocks(self) -> list[nn.Module]:
        return [nn.Sequential(nn.Linear(self.in_features, self.width), nn.ReLU())]

    def build_pool(self) -> nn.Module:
        return nn.Identity()

    @property
    def out_features(self) -> int:
        return self.width


class Shop(Source):
    """Visits to a shop (a count) and whether the day was busy, from the day's temperature."""

    def write(self, params: Params, out: Path) -> int:
        rng = np.random.default_rng(params.data.synthetic.seed)
        n = params.data.synthetic.n_samples
        temperature = rng.uniform(0, 30, n).round(1)
        visits = rng.poisson(np.exp(0.5 + temperature / 15))
        frame = pd.DataFrame(
            {"temperature": temperature, "visits": visits, "busy": (visits > 8).astype(int)}
        )
        frame.to_csv(out / "shop.csv", index=False)
        return n


@pytest.fixture
def plugins() -> Iterator[None]:
    registered = [
        (KINDS, "count", Count),
        (INPUTS, "scalar", ScalarInput),
        (BACKBONES, "one_layer", OneLayer),
        (SOURCES, "shop", Shop),
    ]
    for registry, name, cls in registered:
        registry.register(name)(cls)
    try:
        yield
    finally:
        for registry, name, _ in registered:
            registry.unregister(name)


def test_a_toy_kind_input_backbone_and_source_run_split_train_and_serving(
    plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    params = parse_params(
        {
            "data": {
                "source": "shop",
                "synthetic": {"n_samples": 200, "seed": 3},
                "table": "shop.csv",
                "inputs": {"day": {"kind": "scalar", "column": "temperature"}},
            },
            "tasks": {"visits": {"kind": "count"}, "busy": {"kind": "binary"}},
            "model": {"backbone": {"name": "one_layer", "width": 8, "depth": 1}},
            "train": {"epochs": 3, "batch_size": 32, "patience": None},
            "augment": {"enabled": False},
            "tune": {"enabled": False},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "toys"},
        }
    )
    paths = ProjectPaths(tmp_path)
    assert stages.prepare(params, paths) == 200
    sizes = stages.split(params, paths)
    assert sum(sizes.values()) == 200
    run_info = stages.train(params, paths)
    assert run_info["run_id"]

    predictor = Predictor.from_dir(paths.models_dir)
    assert type(predictor.model.trunk[0][0]) is nn.Linear  # the toy backbone was built
    request = pd.DataFrame({"temperature": [2.0, 28.0]})
    out = predictor.predict_frame(request)
    assert list(out.columns) == ["visits", "busy", "busy_proba"]
    assert (out["visits"] > 0).all()  # the count kind decodes exp(log-rate)
    assert set(out["busy"]) <= {0, 1}
    metrics = stages.evaluate(params, paths)
    assert metrics["tasks"]["visits"]["kind"] == "count"
    assert np.isfinite(metrics["tasks"]["visits"]["score"])
