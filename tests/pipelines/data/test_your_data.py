"""Bring your own data: a user's table and files (built here in tmp_path) through ``split``
and ``train``. Every bad input fails naming the file, the row and column (or the params key)
and what was expected, and leaves the previous ``data/splits`` and ``models`` untouched."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from pipelines import stages
from pipelines.config import Params, parse_params
from pipelines.data.dataset import read_table
from pipelines.data.splits import load_input_specs, load_split
from pipelines.errors import DataError
from pipelines.files import ProjectPaths
from pipelines.serving import InvalidRequest, Predictor

N = 40
DATA = "mine"  # data.dir, under the project root
IMAGE = {"kind": "image", "column": "path", "size": 16, "channels": 1}
FEATURES = {"kind": "features", "numeric": ["length"], "categorical": ["colour"]}
TASKS: dict[str, Any] = {
    "grade": {"kind": "ordinal", "n_classes": 3},
    "animal": {"kind": "classification", "classes": ["cat", "dog"]},
}
COLOURS = ["red", "green", "blue"]


def params_dict(root: Path, inputs: dict[str, Any], tasks: dict[str, Any], **data: Any) -> dict:
    """A fresh params dict for ``source: files`` reading ``root/mine``, tiny model and training,
    MLflow writing into ``root``."""
    return {
        "data": {"source": "files", "dir": DATA, "table": "table.csv", "inputs": inputs, **data},
        "tasks": tasks,
        "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
        "augment": {"enabled": False},
        "model": {
            "backbone": {"name": "auto", "width": 4, "depth": 1},
            "head_hidden": 8,
            "dropout": 0.0,
        },
        "train": {"epochs": 2, "batch_size": 16, "patience": None, "device": "cpu"},
        "tune": {"enabled": False, "storage": f"sqlite:///{root / 'optuna.db'}"},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "your-data"},
        "register": {"model_name": "your-data", "alias": "champion"},
    }


def write_png(path: Path, pixels: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path.name


def image_table(folder: Path, n: int = N, seed: int = 0) -> pd.DataFrame:
    """``n`` 16 px greyscale PNGs under ``images/`` and a table naming them, with an ordinal
    grade, a named class and two features (a few values missing)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        write_png(folder / "images" / f"{i:03d}.png", rng.integers(0, 256, (16, 16), np.uint8))
        paths.append(f"images/{i:03d}.png")
    length = rng.uniform(0, 100, n).round(2).astype(object)
    length[::9] = None
    colour = np.array([COLOURS[i % 3] for i in range(n)], dtype=object)
    colour[5::11] = None
    return pd.DataFrame(
        {
            "id": [f"r{i:03d}" for i in range(n)],
            "path": paths,
            "grade": np.arange(n) % 3,
            "animal": ["cat", "dog"] * (n // 2),
            "length": length,
            "colour": colour,
        }
    )


@dataclass
class Project:
    """A project root (the cwd) with the user's data in ``mine/`` and a good split made."""

    root: Path
    raw: dict[str, Any]
    frame: pd.DataFrame

    @property
    def folder(self) -> Path:
        return self.root / DATA

    @property
    def table(self) -> Path:
        return self.folder / self.raw["data"]["table"]

    @property
    def paths(self) -> ProjectPaths:
        return ProjectPaths(self.root)

    @property
    def params(self) -> Params:
        return parse_params(self.raw, source="test params")

    def write(self, frame: pd.DataFrame | None = None) -> None:
        (self.frame if frame is None else frame).to_csv(self.table, index=False)

    def split(self) -> dict[str, int]:
        return stages.split(self.params, self.paths)

    def split_fails(self) -> str:
        """Run split expecting a DataError naming the table; the earlier outputs stay as
        they were, byte for byte."""
        before = outputs(self.root)
        with pytest.raises(DataError) as err:
            self.split()
        assert outputs(self.root) == before
        return str(err.value)


def outputs(root: Path) -> dict[str, bytes]:
    """Every file under data/ (the user's folder aside) and models/, and data/'s entries (a
    leftover scratch folder would show)."""
    files = {
        str(p.relative_to(root)): p.read_bytes()
        for d in ("data", "models")
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }
    files["data/"] = " ".join(sorted(p.name for p in (root / "data").iterdir())).encode()
    return files


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Images + features in mine/table.csv, split once; models/ holds an earlier model."""
    monkeypatch.chdir(tmp_path)
    inputs = {"image": dict(IMAGE), "tab": dict(FEATURES)}
    raw = params_dict(tmp_path, inputs, json.loads(json.dumps(TASKS)))
    project = Project(tmp_path, raw, image_table(tmp_path / DATA))
    project.write()
    assert sum(project.split().values()) == N
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "run.json").write_text('{"run_id": "earlier"}\n')
    return project


def split_rows(paths: ProjectPaths, name: str) -> pd.DataFrame:
    return pd.read_csv(paths.splits_dir / f"{name}.csv", dtype=str, keep_default_na=False)


# --- errors that name the file, the row and the column ----------------------------------


@pytest.mark.parametrize(
    ("missing", "unreadable", "shown"),
    [
        ([4, 20], [9], "3 of 40 files"),
        ([3, 7, 15, 19, 27, 31], [11, 23], "8 of 40 files"),
    ],
    ids=["three", "eight"],
)
def test_missing_or_unreadable_images_are_counted_and_the_first_rows_listed(
    project: Project, missing: list[int], unreadable: list[int], shown: str
) -> None:
    for i in missing:
        (project.folder / project.frame.loc[i, "path"]).unlink()
    for i in unreadable:
        (project.folder / project.frame.loc[i, "path"]).write_bytes(b"not a png")
    message = project.split_fails()
    assert message.startswith(
        f"{project.table}: {shown} in column 'path' are missing or unreadable\n"
    )
    bad = sorted(missing + unreadable)
    listed = re.findall(r"^  row (\d+), column 'path': images/(\d+)\.png \((.*)\)$", message, re.M)
    assert [(int(r), int(f)) for r, f, _ in listed] == [(i + 2, i) for i in bad[:5]]  # CSV lines
    for _, f, why in listed:
        expected = "cannot identify image file" if int(f) in unreadable else "No such file"
        assert expected in why
    if len(bad) > 5:
        assert message.endswith(f"\n  ... and {len(bad) - 5} more")
    else:
        assert "more" not in message


def test_an_empty_image_cell_is_reported_as_such(project: Project) -> None:
    frame = project.frame.copy()
    frame.loc[6, "path"] = None
    project.write(frame)
    message = project.split_fails()
    assert "1 of 40 files in column 'path'" in message
    assert re.search(r"row 8, column 'path': .*\(empty cell\)", message)


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        (
            "grade",
            {4: "5", 9: "1.5", 12: "-1"},
            [
                "row 6, column 'grade': got 5, expected an integer 0..2 or empty "
                "(task 'grade', ordinal)",
                "row 11, column 'grade': got 1.5, expected an integer 0..2 or empty",
                "row 14, column 'grade': got -1, expected an integer 0..2 or empty",
            ],
        ),
        (
            "animal",
            {2: "cow", 5: "Cat"},
            [
                "row 4, column 'animal': got 'cow', expected one of ['cat', 'dog'] or empty "
                "(task 'animal', classification)",
                "row 7, column 'animal': got 'Cat', expected one of ['cat', 'dog'] or empty",
            ],
        ),
    ],
    ids=["integer-levels", "named-classes"],
)
def test_a_label_outside_the_tasks_classes_names_row_column_and_the_classes(
    project: Project, column: str, values: dict[int, str], expected: list[str]
) -> None:
    frame = project.frame.astype({column: object})
    for row, value in values.items():
        frame.loc[row, column] = value
    project.write(frame)
    message = project.split_fails()
    assert message.startswith(f"{project.table}: invalid labels\n")
    for line in expected:
        assert line in message
    assert len(message.splitlines()) == 1 + len(values)  # only the bad rows


def test_a_non_numeric_feature_value_names_row_column_and_the_params_key(
    project: Project,
) -> None:
    frame = project.frame.copy()
    frame.loc[6, "length"] = "long"
    frame.loc[8, "length"] = "1,5"
    frame.loc[10, "length"] = "inf"
    project.write(frame)
    message = project.split_fails()
    assert message.startswith(f"{project.table}: non-numeric features\n")
    assert (
        "row 8, column 'length': got 'long', expected a number or empty (data.inputs.tab.numeric)"
        in message
    )
    assert "row 10, column 'length': got '1,5', expected a number" in message
    assert "row 12, column 'length': got 'inf', expected a number" in message


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("data.inputs.image.column", "picture", "'picture'"),
        ("tasks.grade.column", "level", "'level'"),
        ("data.inputs.tab.numeric", ["length", "weight"], "'weight'"),
        ("tasks.animal.column", 9, "9"),
    ],
    ids=["input", "task", "feature", "position"],
)
def test_a_column_that_does_not_exist_names_the_params_key_and_lists_the_columns(
    project: Project, key: str, value: Any, named: str
) -> None:
    node = project.raw
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    message = project.split_fails()
    assert message == (
        f"{project.table}: {key} names column {named}, which does not exist; "
        "columns: ['id', 'path', 'grade', 'animal', 'length', 'colour']"
    )


def test_a_column_named_twice_in_the_header_is_named(project: Project) -> None:
    """pandas would rename the second `path` to `path.1` and read the first (here the ids)
    as image files: "40 of 40 files missing" blamed the files, not the header."""
    text = project.table.read_text()
    assert text.startswith("id,path,")
    project.table.write_text(text.replace("id,", "path,", 1))
    message = project.split_fails()
    assert message == (
        f"{project.table}: column 'path' is named twice in the header (positions 0 and 1, "
        "from 0); rename one"
    )
    blanks = project.folder / "blanks.csv"
    blanks.write_text(",,x\n1,2,3\n")  # two empty header cells are no repeated name
    assert list(read_table(blanks, header=True, generated=False).frame.columns)[2] == "x"


def test_a_task_without_labelled_rows_in_a_split_is_refused(project: Project) -> None:
    frame = project.frame.copy()
    frame["rare"] = None
    frame.loc[[3, 30], "rare"] = "1"  # 2 labelled rows cannot reach 3 splits
    project.write(frame)
    project.raw["tasks"]["rare"] = {"kind": "binary"}
    message = project.split_fails()
    assert message.startswith(f"{project.table}: no labelled rows for task 'rare' in ")
    assert re.search(r"task 'rare' in (train|val|test) \(\d+ rows\)", message)
    assert "grade" not in message and "animal" not in message
    assert message.endswith("Label more rows for these tasks or change the split fractions")


def test_a_signal_folder_maps_files_to_rows_and_must_hold_one_per_row(project: Project) -> None:
    for i in range(N):  # signal i is the row number, so its row is easy to check
        path = project.folder / "waves" / "a" / f"{i:04d}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.full(8, float(i)) + np.linspace(0, 1, 8))
    project.raw["data"]["inputs"] = {"wave": {"kind": "signal", "folders": ["waves/a"]}}
    project.split()
    inputs, _ = load_split(project.paths, "train", project.params.task_specs())
    (spec,) = load_input_specs(project.paths)
    raw = inputs["wave"][:, 0] * spec.std[0] + spec.mean[0]
    rows = [int(r[1:]) for r in split_rows(project.paths, "train")["id"]]
    np.testing.assert_allclose(raw[:, 0], rows, atol=1e-4)

    (project.folder / "waves" / "a" / "0017.npy").unlink()
    message = project.split_fails()
    assert message == (
        f"{project.folder / 'waves' / 'a'}: 39 .npy files but {project.table} has 40 rows "
        "(data.inputs.wave.folders[0]: the i-th file in name order is row i)"
    )


def test_a_missing_group_cell_names_its_row(project: Project) -> None:
    frame = project.frame.copy()
    frame["specimen"] = [f"s{i // 4:02d}" for i in range(N)]
    frame.loc[13, "specimen"] = None
    project.write(frame)
    project.raw["data"]["group"] = "specimen"
    message = project.split_fails()
    assert message == (
        f"{project.table}: row 15, column 'specimen' (data.group) is empty; "
        "every row needs its group"
    )


# --- tables and files that work ------------------------------------------------------------


def test_a_headerless_csv_with_columns_by_position(project: Project) -> None:
    frame = project.frame[["path", "grade", "animal"]]
    frame.to_csv(project.table, index=False, header=False)
    project.raw["data"] |= {"header": False, "inputs": {"image": {**IMAGE, "column": 0}}}
    project.raw["tasks"]["grade"]["column"] = 1
    project.raw["tasks"]["animal"]["column"] = 2
    sizes = project.split()
    assert sum(sizes.values()) == N  # the first line is a sample, not a header
    tasks = project.params.task_specs()
    for name in ("train", "val", "test"):
        inputs, labels = load_split(project.paths, name, tasks)
        rows = split_rows(project.paths, name)
        assert list(rows.columns) == ["0", "1", "2"]
        np.testing.assert_array_equal(labels[:, 0], rows["1"].astype(float))
        np.testing.assert_array_equal(labels[:, 1], (rows["2"] == "dog").astype(float))
        first = np.asarray(Image.open(project.folder / rows["0"].iloc[0]))
        np.testing.assert_array_equal(inputs["image"][0, :, :, 0], first)

    (project.folder / "images" / "000.png").unlink()  # the file on the first line
    message = project.split_fails()
    assert "1 of 40 files in column '0'" in message
    assert "\n  row 1, column '0': images/000.png (" in message


def test_a_manifest_with_spaces_after_the_commas_reads_like_one_without(
    project: Project,
) -> None:
    """`images/000.png, 0, cat` as people write manifests by hand (the issue's example)."""
    frame = project.frame[["path", "grade", "animal"]]
    lines = ["path, grade, animal"] + [", ".join(map(str, row)) for row in frame.to_numpy()]
    project.table.write_text("\n".join(lines) + "\n")
    project.raw["data"]["inputs"] = {"image": IMAGE}
    project.split()
    inputs, labels = load_split(project.paths, "train", project.params.task_specs())
    rows = split_rows(project.paths, "train")
    np.testing.assert_array_equal(labels[:, 0], rows["grade"].astype(float))
    np.testing.assert_array_equal(labels[:, 1], (rows["animal"] == "dog").astype(float))
    first = np.asarray(Image.open(project.folder / rows["path"].iloc[0]))
    np.testing.assert_array_equal(inputs["image"][0, :, :, 0], first)


def test_a_csv_with_a_header_also_takes_columns_by_position(project: Project) -> None:
    project.raw["data"]["inputs"] = {"image": {**IMAGE, "column": 1}}  # 'path'
    project.raw["tasks"]["grade"]["column"] = 2
    project.raw["tasks"]["animal"]["column"] = 3
    project.split()
    inputs, labels = load_split(project.paths, "val", project.params.task_specs())
    rows = split_rows(project.paths, "val")
    np.testing.assert_array_equal(labels[:, 0], rows["grade"].astype(float))
    np.testing.assert_array_equal(labels[:, 1], (rows["animal"] == "dog").astype(float))
    last = np.asarray(Image.open(project.folder / rows["path"].iloc[-1]))
    np.testing.assert_array_equal(inputs["image"][-1, :, :, 0], last)


def test_jpeg_and_png_of_any_size_and_mode_are_resized_to_rgb(project: Project) -> None:
    colours = {"red": (220, 20, 20), "green": (30, 180, 60), "grey": (90, 90, 90)}
    kinds = [  # (file, mode, size, colour)
        ("png", "L", (16, 16), "grey"),
        ("jpg", "RGB", (24, 20), "red"),
        ("png", "RGB", (32, 32), "green"),
        ("jpg", "L", (20, 28), "grey"),
        ("png", "RGBA", (12, 40), "red"),
    ]
    frame = project.frame.copy()
    for i in range(N):
        ext, mode, size, colour = kinds[i % len(kinds)]
        rgb = colours[colour]
        fill = rgb[0] if mode == "L" else (*rgb, 255) if mode == "RGBA" else rgb
        name = f"mixed/{i:03d}.{ext}"
        (project.folder / "mixed").mkdir(exist_ok=True)
        Image.new(mode, size, fill).save(project.folder / name)
        frame.loc[i, "path"] = name
    project.write(frame)
    project.raw["data"]["inputs"] = {"image": {**IMAGE, "size": 20, "channels": 3}}
    project.split()
    for split in ("train", "val", "test"):
        inputs, _ = load_split(project.paths, split, project.params.task_specs())
        images = inputs["image"]
        assert images.shape == (len(images), 20, 20, 3) and images.dtype == np.uint8
        for image, row in zip(images, split_rows(project.paths, split)["id"], strict=True):
            _, _, _, colour = kinds[int(row[1:]) % len(kinds)]
            np.testing.assert_allclose(image.reshape(-1, 3).mean(0), colours[colour], atol=6)
    assert load_input_specs(project.paths)[0].shape == (20, 20, 3)


def test_a_parquet_table_with_array_signals_and_features(project: Project) -> None:
    rng = np.random.default_rng(3)
    n = 36
    amplitude = rng.normal(5.0, 2.0, (n, 32))
    phase = rng.normal(-1.0, 0.5, (n, 32))
    temperature = rng.normal(20, 4, n)
    temperature[7] = np.nan
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "amplitude": list(amplitude),
            "phase": list(phase),
            "temperature": temperature,
            "sensor": [["s1", "s2", None][i % 3] for i in range(n)],
            "ok": (np.arange(n) % 2).astype(float),
            "quality": rng.normal(50, 10, n),
        }
    )
    frame.to_parquet(project.folder / "table.parquet")
    project.raw["data"] |= {
        "table": "table.parquet",
        "inputs": {
            "wave": {"kind": "signal", "columns": ["amplitude", "phase"]},
            "readings": {"kind": "features", "numeric": ["temperature"], "categorical": ["sensor"]},
        },
    }
    project.raw["tasks"] = {"ok": {"kind": "binary"}, "quality": {"kind": "regression"}}
    sizes = project.split()
    assert sum(sizes.values()) == n
    wave, readings = load_input_specs(project.paths)
    assert (wave.channels, wave.length) == (("amplitude", "phase"), 32)
    assert readings.categories == (("s1", "s2"),)
    train_ids = split_rows(project.paths, "train")["id"].astype(int).to_numpy()
    raw_train = np.stack([amplitude[train_ids], phase[train_ids]], axis=1)
    np.testing.assert_allclose(wave.mean, raw_train.mean(axis=(0, 2)))
    np.testing.assert_allclose(wave.std, raw_train.std(axis=(0, 2)))
    tasks = project.params.task_specs()
    for name in ("train", "val", "test"):
        inputs, labels = load_split(project.paths, name, tasks)
        ids = split_rows(project.paths, name)["id"].astype(int).to_numpy()
        assert inputs["wave"].shape == (len(ids), 2, 32) and inputs["readings"].shape == (
            len(ids),
            3,
        )
        restored = inputs["wave"] * np.array(wave.std)[:, None] + np.array(wave.mean)[:, None]
        np.testing.assert_allclose(restored[:, 0], amplitude[ids], atol=1e-4)
        np.testing.assert_allclose(restored[:, 1], phase[ids], atol=1e-4)
        np.testing.assert_array_equal(labels[:, 0], frame["ok"][ids])
        np.testing.assert_allclose(labels[:, 1], frame["quality"][ids])
        onehot = inputs["readings"][:, 1:]
        expected = [[s == "s1", s == "s2"] for s in frame["sensor"][ids]]
        np.testing.assert_array_equal(onehot, np.array(expected, dtype=np.float32))

    short = frame.copy()
    short.at[5, "phase"] = phase[5][:31]
    short.to_parquet(project.folder / "table.parquet")
    message = project.split_fails()
    assert message == (
        f"{project.folder / 'table.parquet'}: 1 signals are not finite 1-D arrays of 32 "
        "samples (as most rows are)\n  row 5, input 'wave' channel 1: shape (31,)"
    )


def test_rows_of_one_group_land_in_one_split(project: Project) -> None:
    frame = project.frame.copy()
    frame["specimen"] = [f"s{i // 4:02d}" for i in range(N)]  # 10 specimens of 4 rows
    frame["grade"] = [(i // 4) % 3 for i in range(N)]
    frame["animal"] = [["cat", "dog"][(i // 8) % 2] for i in range(N)]
    project.write(frame)
    project.raw["data"]["group"] = "specimen"
    sizes = project.split()
    groups = {name: split_rows(project.paths, name)["specimen"] for name in sizes}
    owners: dict[str, set[str]] = {}
    for name, column in groups.items():
        for specimen in column:
            owners.setdefault(specimen, set()).add(name)
    assert len(owners) == 10 and all(len(o) == 1 for o in owners.values())
    assert all(column.value_counts().eq(4).all() for column in groups.values())
    assert all(size % 4 == 0 and size > 0 for size in sizes.values())


def test_feature_encoding_is_fitted_on_the_train_rows_only(project: Project) -> None:
    _, tab = load_input_specs(project.paths)
    rows = {name: split_rows(project.paths, name) for name in ("train", "val", "test")}
    train_length = pd.to_numeric(rows["train"]["length"]).dropna()
    every_length = pd.to_numeric(project.frame["length"]).dropna()
    assert tab.mean == pytest.approx((train_length.mean(),), rel=1e-12)
    assert tab.std == pytest.approx((train_length.std(ddof=0),), rel=1e-12)
    assert abs(every_length.mean() - train_length.mean()) > 1e-6  # all rows would differ

    # a colour only a test row has, and a length only a val row lacks: the same split again
    test_id, val_id = rows["test"]["id"].iloc[0], rows["val"]["id"].iloc[1]
    frame = project.frame.copy()
    frame.loc[frame["id"] == test_id, "colour"] = "violet"
    frame.loc[frame["id"] == val_id, "length"] = None
    project.write(frame)
    project.split()
    _, refitted = load_input_specs(project.paths)
    assert refitted.categories == (("blue", "green", "red"),)
    assert refitted.mean == tab.mean  # val and test values never reach the encoding
    test_inputs, _ = load_split(project.paths, "test", project.params.task_specs())
    test_rows = split_rows(project.paths, "test")
    violet = int(np.flatnonzero(test_rows["id"] == test_id)[0])
    assert test_rows["colour"].iloc[violet] == "violet"
    np.testing.assert_array_equal(test_inputs["tab"][violet, 1:], [0, 0, 0])
    val_inputs, _ = load_split(project.paths, "val", project.params.task_specs())
    assert split_rows(project.paths, "val")["id"].iloc[1] == val_id
    assert val_inputs["tab"][1, 0] == 0.0  # missing -> the train mean -> 0
    known = next(i for i, c in enumerate(test_rows["colour"]) if c in COLOURS)
    expected = [float(c == test_rows["colour"].iloc[known]) for c in ("blue", "green", "red")]
    assert test_inputs["tab"][known, 1:].tolist() == expected


# --- Parquet and signal edge cases -------------------------------------------------------


def parquet_signals(project: Project, n: int = 30, **columns: Any) -> pd.DataFrame:
    """A Parquet table of ``n`` rows: a 16-sample signal per row, a binary label, ``columns``;
    params read the signal as input 'wave' and the label as task 'ok'."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {"signal": list(rng.normal(size=(n, 16))), "ok": np.arange(n) % 2, **columns}
    )
    project.raw["data"] |= {
        "table": "table.parquet",
        "inputs": {"wave": {"kind": "signal", "columns": ["signal"]}},
    }
    project.raw["tasks"] = {"ok": {"kind": "binary"}}
    return frame


def test_a_parquet_path_column_with_an_empty_first_cell_names_the_row(project: Project) -> None:
    (project.folder / "waves").mkdir()
    for i in range(30):
        np.save(project.folder / "waves" / f"{i}.npy", np.arange(16.0) * i)
    frame = parquet_signals(project, path=[None, *(f"waves/{i}.npy" for i in range(1, 30))])
    frame.to_parquet(project.folder / "table.parquet")
    project.raw["data"]["inputs"]["wave"]["columns"] = ["path"]
    message = project.split_fails()
    assert "1 of 30 files in column 'path'" in message
    assert "row 0, column 'path'" in message and "empty cell" in message


def test_a_short_signal_on_the_first_row_is_the_row_reported(project: Project) -> None:
    frame = parquet_signals(project)
    frame.at[0, "signal"] = frame.at[0, "signal"][:15]
    frame.to_parquet(project.folder / "table.parquet")
    message = project.split_fails()
    assert "row 0, input 'wave' channel 0: shape (15,)" in message


def test_parquet_labels_with_a_gap_match_numeric_class_names(project: Project) -> None:
    grade = (np.arange(30) % 3 + 1).astype(float)
    grade[4] = np.nan  # pandas stores the integers 1-3 as float once one is missing
    parquet_signals(project, grade=grade).to_parquet(project.folder / "table.parquet")
    project.raw["tasks"]["grade"] = {"kind": "classification", "classes": ["1", "2", "3"]}
    project.split()
    _, labels = load_split(project.paths, "train", project.params.task_specs())
    assert set(labels[:, 1][~np.isnan(labels[:, 1])]) == {0.0, 1.0, 2.0}


def test_parquet_category_codes_with_a_gap_are_named_as_in_csv(project: Project) -> None:
    code = (np.arange(30) % 3).astype(float)
    code[2] = np.nan
    frame = parquet_signals(project, code=code)
    project.raw["data"]["inputs"]["site"] = {"kind": "features", "categorical": ["code"]}
    frame.to_parquet(project.folder / "table.parquet")
    project.split()
    from_parquet = load_input_specs(project.paths)[1]
    csv = frame.drop(columns=["signal"]).assign(code=frame["code"].astype("Int64"))
    csv.to_csv(project.folder / "codes.csv", index=False)
    project.raw["data"] |= {
        "table": "codes.csv",
        "inputs": {"site": {"kind": "features", "categorical": ["code"]}},
    }
    project.split()
    (from_csv,) = load_input_specs(project.paths)
    assert from_csv.categories == (("0", "1", "2"),)
    assert from_parquet.categories == from_csv.categories


# --- train and serve a table model ---------------------------------------------------------


def table_frame(n: int = 60, seed: int = 1) -> pd.DataFrame:
    """Penguin-like rows: two measurements and a category; mass in grams and a named class."""
    rng = np.random.default_rng(seed)
    length = rng.uniform(30, 60, n)
    width = rng.uniform(10, 20, n)
    colour = np.array([COLOURS[i % 3] for i in range(n)], dtype=object)
    mass = 2000 + 60 * length + 40 * width + rng.normal(0, 100, n)
    frame = pd.DataFrame(
        {
            "length": length.round(1).astype(object),
            "width": width.round(1),
            "colour": colour,
            "mass": mass.round(0),
            "animal": np.where(length > 45, "dog", "cat"),
        }
    )
    frame.loc[::7, "length"] = None
    frame.loc[3::8, "colour"] = None
    return frame


@dataclass
class Trained:
    root: Path
    params: Params
    paths: ProjectPaths
    run_info: dict[str, Any]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """A features-only table split and trained for 2 epochs, logged to MLflow in tmp."""
    root = tmp_path_factory.mktemp("your-table")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow puts artifacts under ./mlruns of the cwd
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        (root / DATA).mkdir()
        table_frame().to_csv(root / DATA / "table.csv", index=False)
        inputs = {
            "measures": {
                "kind": "features",
                "numeric": ["length", "width"],
                "categorical": ["colour"],
            }
        }
        tasks = {"mass": {"kind": "regression"}, "animal": TASKS["animal"]}
        params = parse_params(params_dict(root, inputs, tasks), source="test params")
        paths = ProjectPaths(root)
        stages.split(params, paths)
        run_info = stages.train(params, paths)
        yield Trained(root, params, paths, run_info)
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set by mlflow.set_experiment


def raw_request(trained: Trained, split: str) -> pd.DataFrame:
    """The split's rows as a client sends them: raw numbers, category strings, gaps."""
    rows = pd.read_csv(trained.paths.splits_dir / f"{split}.csv", dtype=str)
    return pd.DataFrame(
        {
            "length": pd.to_numeric(rows["length"]),
            "width": pd.to_numeric(rows["width"]),
            "colour": [None if pd.isna(v) else v for v in rows["colour"]],
        }
    )


def test_regression_is_standardised_on_train_and_predicted_in_label_units(
    trained: Trained,
) -> None:
    tasks = trained.params.task_specs()
    _, train_labels = load_split(trained.paths, "train", tasks)
    spec = json.loads((trained.paths.models_dir / "model_spec.json").read_text())
    mass = next(t for t in spec["tasks"] if t["name"] == "mass")
    assert mass["target_mean"] == pytest.approx(train_labels[:, 0].mean())
    assert mass["target_std"] == pytest.approx(train_labels[:, 0].std())
    assert mass["target_std"] > 300  # grams, not z-scores

    test_inputs, test_labels = load_split(trained.paths, "test", tasks)
    predicted = Predictor.from_dir(trained.paths.models_dir).predict_inputs(test_inputs)
    grams = predicted["mass"].to_numpy()
    # two epochs barely move the standardised output: predictions sit near the train mean,
    # in grams (a z-score would be within a few units of 0)
    assert np.abs(grams - mass["target_mean"]).max() < 3 * mass["target_std"]
    assert grams.min() > test_labels[:, 0].min() - 3 * mass["target_std"] > 0
    assert set(predicted["animal"]) <= {"cat", "dog"}  # named classes come back as names


def test_the_served_table_model_takes_raw_columns_like_the_checkpoint(trained: Trained) -> None:
    mlflow.set_tracking_uri(trained.params.tracking.uri)
    served_model = mlflow.pyfunc.load_model(trained.run_info["model_uri"])
    predictor = Predictor.from_dir(trained.paths.models_dir)
    tasks = trained.params.task_specs()
    gaps = 0
    for split in ("train", "val", "test"):
        request = raw_request(trained, split)
        gaps += int(request["length"].isna().sum() + request["colour"].isna().sum())
        inputs, _ = load_split(trained.paths, split, tasks)
        direct = predictor.predict_inputs(inputs)
        pd.testing.assert_frame_equal(predictor.predict_frame(request), direct)
        pd.testing.assert_frame_equal(served_model.predict(request), direct)
    assert gaps > 5  # missing numbers and categories were among the requests


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        (lambda r: r.drop(columns=["width"]), "width", r"missing feature column\(s\) \['width'\]"),
        (
            lambda r: r.assign(length=["long", *r["length"].iloc[1:]]),
            "length",
            r"row 0: 'length' wants a number or null, not 'long'",
        ),
    ],
    ids=["missing-column", "non-numeric"],
)
def test_a_bad_request_is_rejected_naming_the_column(
    trained: Trained, change: Any, column: str, reason: str
) -> None:
    request = change(raw_request(trained, "val"))
    with pytest.raises(InvalidRequest, match=reason):
        Predictor.from_dir(trained.paths.models_dir).predict_frame(request)
    mlflow.set_tracking_uri(trained.params.tracking.uri)
    served_model = mlflow.pyfunc.load_model(trained.run_info["model_uri"])
    with pytest.raises(MlflowException) as err:
        served_model.predict(request)
    assert column in err.value.message
