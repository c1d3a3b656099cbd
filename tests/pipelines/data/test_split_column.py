"""A split the user already has: a table column (``split.column``) naming each row's split is
used exactly as given, checked like everything else (unknown or empty values, an empty split,
a task without labels in a split, a group across splits), and recorded in ``split.json`` and
the split hash. Nothing is written unless every check passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.data.splits import split_digest
from pipelines.errors import ConfigError
from tests.pipelines.data.test_your_data import (
    FEATURES,
    TASKS,
    Project,
    image_table,
    params_dict,
    split_rows,
)

N = 40
DEFAULT_FRACTIONS = {"train": 0.60, "val": 0.25, "test": 0.15}


def given_split(i: int) -> str:
    """Rows 3, 8, 13, ... in val and 4, 9, 14, ... in test: each split sees every grade and
    both animals."""
    return {3: "val", 4: "test"}.get(i % 5, "train")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Features in mine/table.csv with a ``split`` column, split once as the column says."""
    monkeypatch.chdir(tmp_path)
    raw = params_dict(tmp_path, {"tab": dict(FEATURES)}, json.loads(json.dumps(TASKS)))
    raw["split"] = DEFAULT_FRACTIONS | {"seed": 0, "column": "split"}
    frame = image_table(tmp_path / "mine", n=N)
    frame["split"] = [given_split(i) for i in range(N)]
    project = Project(tmp_path, raw, frame)
    project.write()
    project.split()
    return project


def ids(project: Project) -> dict[str, set[str]]:
    return {name: set(split_rows(project.paths, name)["id"]) for name in ("train", "val", "test")}


def summary(project: Project) -> dict:
    return json.loads((project.paths.splits_dir / "split.json").read_text())


def test_the_split_is_exactly_the_column_and_is_recorded(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = {
        name: {f"r{i:03d}" for i in range(N) if given_split(i) == name}
        for name in ("train", "val", "test")
    }
    assert project.split() == {"train": 24, "val": 8, "test": 8}
    assert ids(project) == expected
    out = capsys.readouterr().out
    assert (
        f"split: rows as column 'split' of {project.table} says "
        "(split.train/val/test and split.seed are not used)"
    ) in out
    assert "split: train 24, val 8, test 8" in out
    recorded = summary(project)
    assert recorded["val"]["from"] == {"column": "split", "values": ["val"]}
    assert recorded["test"]["n"] == 8 and len(recorded["test"]["sha256"]) == 64

    # the seed decides nothing: another seed, the same files and hash
    before = split_digest(project.paths)
    project.raw["split"]["seed"] = 7
    project.split()
    assert summary(project) == recorded and split_digest(project.paths) == before


def test_the_split_hash_covers_where_the_rows_came_from(project: Project) -> None:
    """A column that reproduces a stratified split gives the same arrays, but the split hash
    (MLflow's ``data.split_sha256``) still tells the two apart."""
    project.raw["split"]["column"] = None
    project.split()
    stratified, stratified_digest = summary(project), split_digest(project.paths)
    assert stratified["test"]["from"] == {"stratified": 0.15, "seed": 0, "group": None}

    rows = ids(project)
    frame = project.frame.copy()
    frame["split"] = [next(s for s, r in rows.items() if f"r{i:03d}" in r) for i in range(N)]
    project.write(frame)
    project.raw["split"]["column"] = "split"
    project.split()
    given = summary(project)
    assert ids(project) == rows
    assert all(given[s]["sha256"] == stratified[s]["sha256"] for s in rows)  # same contents
    assert given["train"]["from"] == {"column": "split", "values": ["train"]}
    assert split_digest(project.paths) != stratified_digest


def test_common_spellings_of_the_split_names_are_accepted(project: Project) -> None:
    spelled = {"train": ["Training", "train"], "val": ["valid", "VALIDATION", "dev"]}
    spelled["test"] = ["test", " Testing"]
    frame = project.frame.copy()
    frame["split"] = [spelled[given_split(i)][i % len(spelled[given_split(i)])] for i in range(N)]
    project.write(frame)
    assert project.split() == {"train": 24, "val": 8, "test": 8}
    assert {name: rows["from"]["values"] for name, rows in summary(project).items()} == {
        "train": ["Training", "train"],
        "val": ["VALIDATION", "dev", "valid"],
        "test": ["Testing", "test"],
    }


def test_an_unknown_or_empty_split_value_names_the_rows_and_the_valid_values(
    project: Project,
) -> None:
    frame = project.frame.copy()
    frame.loc[6, "split"] = "holdout"
    frame.loc[13, "split"] = None
    frame.loc[20, "split"] = "tets"
    project.write(frame)
    assert project.split_fails() == (
        f"{project.table}: column 'split' (split.column) must name each row's split, "
        "train, val or test (also training, valid, validation, dev, testing; any case): "
        "row 8 has 'holdout', row 15 is empty, row 22 has 'tets'"
    )


def test_many_bad_values_list_the_first_five(project: Project) -> None:
    frame = project.frame.copy()
    frame["split"] = "fold1"
    project.write(frame)
    message = project.split_fails()
    assert message.endswith(
        "row 2 has 'fold1', row 3 has 'fold1', row 4 has 'fold1', "
        "row 5 has 'fold1', row 6 has 'fold1' and 35 more"
    )


def test_a_split_without_rows_is_named(project: Project) -> None:
    frame = project.frame.copy()
    frame["split"] = frame["split"].replace("val", "train")
    project.write(frame)
    assert project.split_fails() == (
        f"{project.table}: column 'split' (split.column) puts no rows in val "
        "(train 32, val 0, test 8); every split needs rows"
    )


def test_a_task_without_labels_in_a_split_names_the_task_and_the_split(
    project: Project,
) -> None:
    frame = project.frame.astype({"animal": object})
    frame.loc[frame["split"] == "test", "animal"] = None
    project.write(frame)
    assert project.split_fails() == (
        f"{project.table}: no labelled rows for task 'animal' in test (8 rows). Label more "
        "rows for these tasks or move labelled rows into these splits (column 'split')"
    )


def test_a_missing_column_names_the_params_key(project: Project) -> None:
    project.raw["split"]["column"] = "fold"
    message = project.split_fails()
    assert message.startswith(
        f"{project.table}: split.column names column 'fold', which does not exist; columns: "
    )


def test_groups_must_stay_in_one_given_split(project: Project) -> None:
    """With ``data.group`` the column still decides, and split checks that it keeps every
    group whole (a specimen in train and test would leak)."""
    frame = project.frame.copy()
    frame["specimen"] = [f"s{i // 5:02d}" for i in range(N)]  # each specimen: rows 5k..5k+4
    frame["split"] = [["train", "val", "test", "train"][(i // 5) % 4] for i in range(N)]
    project.write(frame)
    project.raw["data"]["group"] = "specimen"
    assert project.split() == {"train": 20, "val": 10, "test": 10}

    frame.loc[7, "split"] = "test"  # one measurement of s01 moves to test
    project.write(frame)
    assert project.split_fails() == (
        f"{project.table}: group 's01' (data.group) is in val (row 7), test (row 9) by column "
        "'split' (split.column); rows sharing a group must be in one split"
    )


def test_fractions_given_with_a_column_are_refused(project: Project) -> None:
    project.raw["split"] |= {"train": 0.7, "val": 0.2, "test": 0.1}
    with pytest.raises(ConfigError) as err:
        _ = project.params
    assert (
        "split.column 'split' decides each row's split, so the fractions are not used: remove "
        "split.train/val/test or leave them at their defaults 0.6/0.25/0.15 "
        "(got train: 0.7, val: 0.2, test: 0.1)"
    ) in str(err.value)


def test_without_a_column_the_split_is_stratified_as_before(project: Project) -> None:
    """A ``split`` column in the table is just another column unless params name it."""
    by_column = ids(project)
    project.raw["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0}
    assert sum(project.split().values()) == N
    assert summary(project)["val"]["from"] == {"stratified": 0.2, "seed": 0, "group": None}
    stratified = ids(project)
    assert stratified != by_column
    project.raw["split"]["seed"] = 1  # the seed decides again
    project.split()
    assert ids(project) != stratified
