import json

import numpy as np
import pandas as pd
import pytest

from pipelines import stages
from pipelines.config import params_dict, parse_params
from pipelines.data.splits import load_split, stratified_split
from pipelines.errors import DataError


def test_split_is_disjoint_complete_and_in_the_configured_ratios(project):
    params, paths = project
    stages.prepare(params, paths)
    sizes = stages.split(params, paths)
    assert sum(sizes.values()) == params.data.synthetic.n_samples
    assert sizes["train"] == pytest.approx(0.60 * 120, abs=3)
    assert sizes["val"] == pytest.approx(0.25 * 120, abs=3)
    ids = {name: set(pd.read_csv(paths.splits_dir / f"{name}.csv")["path"]) for name in sizes}
    assert (
        not ids["train"] & ids["val"]
        and not ids["train"] & ids["test"]
        and not ids["val"] & ids["test"]
    )
    inputs, labels = load_split(paths, "train", params.task_specs())
    images = inputs["image"]
    assert images.shape == (sizes["train"], 32, 32, 1) and images.dtype == np.uint8
    assert labels.shape == (sizes["train"], 9)
    summary = json.loads((paths.splits_dir / "split.json").read_text())
    assert set(summary) == {"train", "val", "test"} and len(summary["test"]["sha256"]) == 64


def test_stratification_keeps_every_tasks_class_shares_close():
    rng = np.random.default_rng(0)
    labels = rng.choice(6, size=(600, 3), p=[0.5, 0.2, 0.12, 0.1, 0.05, 0.03]).astype(float)
    from mtl_models.tasks import TaskSpec

    tasks = [TaskSpec(f"t{i}", "ordinal", 6) for i in range(3)]
    index = stratified_split(labels, tasks, {"train": 0.6, "val": 0.25, "test": 0.15}, seed=1)
    overall = np.stack([np.bincount(labels[:, t].astype(int), minlength=6) / 600 for t in range(3)])
    for idx in index.values():
        part = labels[idx]
        shares = np.stack(
            [np.bincount(part[:, t].astype(int), minlength=6) / len(part) for t in range(3)]
        )
        assert np.abs(shares - overall).max() < 0.04


def test_bad_labels_name_file_row_and_column_and_keep_previous_split(project):
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    before = (paths.split_dir("train") / "labels.npy").read_bytes()

    manifest = pd.read_csv(paths.manifest)
    manifest = manifest.astype(
        {c: object for c in ("pits_left", "scratches_right", "corrosion_center")}
    )
    manifest.loc[4, "pits_left"] = 7
    manifest.loc[9, "scratches_right"] = 1.5
    manifest.loc[11, "corrosion_center"] = "severe"
    manifest.to_csv(paths.manifest, index=False)

    with pytest.raises(DataError) as err:
        stages.split(params, paths)
    message = str(err.value)
    assert str(paths.manifest) in message
    assert "row 6, column 'pits_left': got 7, expected an integer 0..5 or empty" in message
    assert "row 11, column 'scratches_right': got 1.5" in message
    assert "row 13, column 'corrosion_center': got 'severe'" in message
    assert (paths.split_dir("train") / "labels.npy").read_bytes() == before  # nothing half-written


def test_missing_labels_are_allowed_and_kept_as_nan(project):
    params, paths = project
    stages.prepare(params, paths)
    manifest = pd.read_csv(paths.manifest)
    manifest["pits_left"] = manifest["pits_left"].astype(float)
    manifest.loc[::3, "pits_left"] = np.nan
    manifest.to_csv(paths.manifest, index=False)
    stages.split(params, paths)
    labels = np.concatenate(
        [load_split(paths, s, params.task_specs())[1] for s in ("train", "val", "test")]
    )
    assert np.isnan(labels[:, 3]).sum() == 40
    assert not np.isnan(np.delete(labels, 3, axis=1)).any()


def test_missing_column_and_unreadable_image_are_reported(project):
    params, paths = project
    stages.prepare(params, paths)
    manifest = pd.read_csv(paths.manifest)
    manifest.drop(columns=["pits_right"]).to_csv(paths.manifest, index=False)
    with pytest.raises(DataError, match=r"tasks.pits_right.column names column 'pits_right'"):
        stages.split(params, paths)
    manifest.to_csv(paths.manifest, index=False)
    (paths.raw_dir / manifest.loc[2, "path"]).write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"1 of 120 files .*\n  row 4, column 'path': .*00002.png"):
        stages.split(params, paths)


def test_split_without_prepare_says_what_to_run(project):
    params, paths = project
    with pytest.raises(DataError, match="run `mtlflow prepare`"):
        stages.split(params, paths)


def test_splits_are_memory_mapped_from_the_split_files_themselves(project):
    """Training reads the .npy files split wrote, as copy-on-write maps: nothing is unpacked
    or cached elsewhere, and writing to the arrays leaves the files as split made them."""
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    inputs, labels = load_split(paths, "train", params.task_specs())
    assert isinstance(inputs["image"], np.memmap) and isinstance(labels, np.memmap)
    assert inputs["image"].filename == (paths.split_dir("train") / "input_image.npy").resolve()
    assert not (paths.root / "data" / "cache").exists()
    stored = (paths.split_dir("train") / "labels.npy").read_bytes()
    labels[:] = -1.0  # torch.from_numpy needs writable arrays; the file must not change
    assert (paths.split_dir("train") / "labels.npy").read_bytes() == stored
    digest = json.loads((paths.splits_dir / "split.json").read_text())["train"]["sha256"]

    # another split: another content hash, read from the same place
    stages.split(parse_params(params_dict(params) | {"split": {"seed": 7}}, "t"), paths)
    new = json.loads((paths.splits_dir / "split.json").read_text())["train"]["sha256"]
    assert new != digest
    again, _ = load_split(paths, "train", params.task_specs())
    assert not np.array_equal(np.asarray(again["image"]), np.asarray(inputs["image"]))
