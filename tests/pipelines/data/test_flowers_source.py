"""The `flowers` example source: deterministic RGB images with a `path,type,colour` manifest,
balanced string labels, colour in the colour statistics and type in the shape; and its
params file, whose augmentation keeps what both labels survive and drops what colour does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipelines import stages
from pipelines.config import load_params, parse_params
from pipelines.data.sources import SOURCES
from pipelines.data.sources.flowers import COLOURS, TYPES, write_flowers
from pipelines.files import ProjectPaths
from pipelines.services.augmentation import resolve_augmentation
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "flowers" / "params.yaml"


@pytest.fixture(scope="module")
def flowers(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("flowers")
    assert write_flowers(out, n_images=300, size=64, seed=0) == 300
    return out, pd.read_csv(out / "manifest.csv")


def test_manifest_names_every_image_with_string_labels(flowers):
    out, manifest = flowers
    assert (out / "manifest.csv").read_text().splitlines()[0] == "path,type,colour"
    assert list(manifest["path"]) == [f"images/{i:05d}.png" for i in range(300)]
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        f"{i:05d}.png" for i in range(300)
    ]
    assert set(manifest["type"]) == set(TYPES) == {"rose", "daisy"}
    assert set(manifest["colour"]) == set(COLOURS) == {"red", "pink", "white"}
    for name in manifest["path"].iloc[::37]:
        with Image.open(out / name) as image:
            assert image.mode == "RGB" and image.size == (64, 64)


def test_classes_are_roughly_balanced(flowers):
    _, manifest = flowers
    types = manifest["type"].value_counts(normalize=True)
    colours = manifest["colour"].value_counts(normalize=True)
    assert types.to_numpy() == pytest.approx([0.5] * 2, abs=0.08)
    assert colours.to_numpy() == pytest.approx([1 / 3] * 3, abs=0.08)
    assert pd.crosstab(manifest["type"], manifest["colour"]).to_numpy().min() >= 30


def test_writer_is_deterministic_for_a_seed_and_extends_with_n(tmp_path):
    first, second, other, longer = (tmp_path / name for name in ("a", "b", "c", "d"))
    for out, seed, n in ((first, 3, 6), (second, 3, 6), (other, 4, 6), (longer, 3, 9)):
        out.mkdir()
        write_flowers(out, n_images=n, size=48, seed=seed)
    for name in ("manifest.csv", "images/00000.png", "images/00005.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "images/00005.png").read_bytes() == (longer / "images/00005.png").read_bytes()
    assert (first / "images/00000.png").read_bytes() != (other / "images/00000.png").read_bytes()
    with Image.open(first / "images/00000.png") as image:
        assert image.size == (48, 48)


@pytest.mark.parametrize(("n_images", "size"), [(0, 64), (10, 16)])
def test_writer_rejects_impossible_requests(tmp_path, n_images, size):
    with pytest.raises(ValueError, match="n_images"):
        write_flowers(tmp_path, n_images=n_images, size=size)


def test_colour_is_in_the_colour_statistics_and_type_needs_more(flowers):
    """A linear model on per-channel RGB and HSV means and spreads reads the colour almost
    perfectly, but not the type: that takes the petals' shape."""
    out, manifest = flowers
    stats = []
    for name in manifest["path"]:
        with Image.open(out / name) as image:
            pixels = [
                np.asarray(image.convert(mode), float).reshape(-1, 3) for mode in ("RGB", "HSV")
            ]
        stats.append(np.concatenate([np.r_[p.mean(0), p.std(0)] for p in pixels]))

    def score(task: str) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        return cross_val_score(model, np.array(stats), manifest[task], cv=5).mean()

    assert score("colour") > 0.9
    assert score("type") < score("colour") - 0.15


def test_source_is_registered_with_the_generated_size():
    params = load_params(EXAMPLE)
    source = SOURCES.get("flowers")()
    assert source.image_size(params.data) == params.data.synthetic.image_size == 64


def test_example_params_file_is_valid():
    params = load_params(EXAMPLE)
    assert params.data.source == "flowers" and params.data.header
    assert params.data.image_size("image") == 64 and params.data.inputs["image"].channels == 3
    assert params.tasks["type"].classes == ["rose", "daisy"]
    assert params.tasks["colour"].classes == ["red", "pink", "white"]
    assert set(params.tasks["colour"].sensitive_to) == {"hue", "saturation", "grayscale"}
    assert (params.split.train, params.split.val, params.split.test) == (0.6, 0.25, 0.15)
    assert params.model.backbone.name == "torchvision/squeezenet1_1"
    assert params.model.shared_depth == "features.11"  # fire8 and after: one per task
    assert params.train.weighting.method == "equal"  # the summed losses
    assert not params.tune.enabled and not params.baselines.enabled
    assert params.registry.model_name == "mtlflow-flowers"


def test_example_augmentation_excludes_only_what_colour_does_not_survive():
    policy = resolve_augmentation(load_params(EXAMPLE))
    excluded = {d.name: d.reason for d in policy.excluded}
    assert set(excluded) == {"HueSaturationValue", "ToGray"}
    assert all("colour" in reason and "type" not in reason for reason in excluded.values())
    kept = {d.name for d in policy.kept}
    assert {"HorizontalFlip", "VerticalFlip", "RandomRotate90", "Affine"} <= kept


def test_example_prepares_and_splits_60_25_15(tmp_path, monkeypatch):
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["data"]["synthetic"] |= {"n_samples": 80}
    raw["tracking"] = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "ex-flowers"}
    monkeypatch.chdir(tmp_path)
    params, paths = parse_params(raw, source="example"), ProjectPaths(tmp_path)
    assert stages.prepare(params, paths) == 80
    sizes = stages.split(params, paths)  # stratified on both labels: about 48 / 20 / 12
    assert sum(sizes.values()) == 80
    assert sizes == pytest.approx({"train": 48, "val": 20, "test": 12}, abs=2)
