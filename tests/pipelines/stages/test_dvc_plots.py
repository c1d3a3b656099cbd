"""The plots as data for DVC: what train and evaluate write under reports/plots/data/, how
dvc.yaml declares it, and `dvc plots diff` between two experiments of the pipeline."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtl_models.tasks import TaskSpec
from mtl_models.train.trainer import EpochLog
from pipelines.files import ProjectPaths
from pipelines.services import plot_data
from tests.conftest import REPO
from tests.helpers import copy_project, run

GIT_USER = ["-c", "user.name=t", "-c", "user.email=t@t"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def epoch(n: int, losses: dict[str, float], scores: dict[str, float]) -> EpochLog:
    return EpochLog(
        epoch=n,
        train_loss=sum(losses.values()),
        task_losses=losses,
        weights={},
        val_metrics={task: {"score": s, "accuracy": 0.5} for task, s in scores.items()},
        val_score=float(np.mean(list(scores.values()))),
        seconds=1.0,
        is_best=False,
    )


def test_learning_curves_are_a_file_per_task_with_a_row_per_epoch(tmp_path):
    paths = ProjectPaths(tmp_path)
    stale = plot_data.curves_dir(paths) / "renamed_task.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("epoch,val_score,train_loss\n1,0,0\n")
    history = [
        epoch(1, {"shape": 1.5, "colour": 0.5}, {"shape": 0.25, "colour": float("nan")}),
        epoch(2, {"shape": 1.0, "colour": 0.25}, {"shape": 0.5, "colour": 0.75}),
    ]
    plot_data.write_learning_curves(history, paths)

    assert sorted(p.name for p in plot_data.curves_dir(paths).iterdir()) == [
        "colour.csv",
        "shape.csv",
    ]  # the whole directory is replaced: no file of a task that is gone
    shape = read_csv(plot_data.curves_dir(paths) / "shape.csv")
    assert shape == [
        {"epoch": "1", "val_score": "0.25", "train_loss": "1.5"},
        {"epoch": "2", "val_score": "0.5", "train_loss": "1"},
    ]
    colour = read_csv(plot_data.curves_dir(paths) / "colour.csv")
    assert [row["val_score"] for row in colour] == ["", "0.75"]  # undefined: a gap
    mean = read_csv(plot_data.mean_curve_file(paths))
    assert [(r["epoch"], r["train_loss"]) for r in mean] == [("1", "1"), ("2", "0.625")]
    assert mean[1]["val_score"] == "0.625"


def test_confusion_rows_name_the_classes_and_skip_unlabelled_samples(tmp_path):
    colour = TaskSpec("colour", "classification", n_classes=3, classes=("red", "pink", "white"))
    rating = TaskSpec("rating", "ordinal", n_classes=6)
    weight = TaskSpec("weight", "regression")
    labels = np.array([[0, 5, 1.2], [2, np.nan, 0.3], [np.nan, 1, 2.0], [1, 0, np.nan]])
    predictions = np.array([[0, 4, 1.0], [1, 2, 0.4], [2, 1, 1.9], [1, 0, 0.0]])
    paths = ProjectPaths(tmp_path)

    plot_data.write_confusion([colour, rating, weight], labels, predictions, paths)

    folder = plot_data.confusion_dir(paths)
    assert sorted(p.name for p in folder.iterdir()) == ["colour.csv", "rating.csv"]
    assert read_csv(folder / "colour.csv") == [
        {"actual": "red", "predicted": "red"},
        {"actual": "white", "predicted": "pink"},
        {"actual": "pink", "predicted": "pink"},
    ]
    rows = [(r["actual"], r["predicted"]) for r in read_csv(folder / "rating.csv")]
    assert rows == [("5", "4"), ("1", "1"), ("0", "0")]


def test_confusion_of_regression_only_tasks_is_an_empty_directory(tmp_path):
    paths = ProjectPaths(tmp_path)
    weight = TaskSpec("weight", "regression")
    plot_data.write_confusion([weight], np.ones((3, 1)), np.ones((3, 1)), paths)
    assert list(plot_data.confusion_dir(paths).iterdir()) == []  # exists: DVC finds its output


def test_affinity_is_a_file_per_stepped_task_of_the_others_it_moved(tmp_path):
    report = {
        "enabled": True,
        "matrix": {
            "a": {"a": 0.5, "b": 0.125, "c": None},  # a -> c never measured
            "b": {"a": -0.25, "b": 0.5, "c": -0.0},
            "c": {"a": 0.1, "b": 0.2, "c": 0.3},
        },
    }
    paths = ProjectPaths(tmp_path)
    plot_data.write_affinity(report, paths)
    folder = plot_data.affinity_dir(paths)
    rows = {f.stem: [(r["target"], r["affinity"]) for r in read_csv(f)] for f in folder.iterdir()}
    assert rows == {
        "a": [("b", "0.125")],
        "b": [("a", "-0.25"), ("c", "0")],  # not "-0"
        "c": [("a", "0.1"), ("b", "0.2")],
    }

    plot_data.write_affinity({"enabled": False, "note": "off"}, paths)
    assert list(folder.iterdir()) == []  # nothing to draw; the output still exists


def test_a_task_name_that_is_no_file_name_fails_clearly(tmp_path):
    history = [epoch(1, {"a/b": 1.0}, {"a/b": 0.5})]
    with pytest.raises(ValueError, match="'a/b' cannot name a plot data file"):
        plot_data.write_learning_curves(history, ProjectPaths(tmp_path))


def test_dvc_yaml_declares_the_data_as_cached_outputs_and_draws_it():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    paths = ProjectPaths(REPO)
    written = {
        "train": [
            plot_data.curves_dir(paths),
            plot_data.mean_curve_file(paths),
            plot_data.affinity_dir(paths),
        ],
        "evaluate": [plot_data.confusion_dir(paths)],
    }
    for stage, files in written.items():
        outs = dvc["stages"][stage]["outs"]
        for file in files:
            name = str(file.relative_to(REPO))
            assert name in outs, f"{stage} must output {name}"
    # cached, with whatever else `dvc plots`/`dvc metrics` read: reports/ is git-ignored, so
    # an experiment's copy lives in DVC's cache or nowhere
    for stage in ("train", "evaluate"):
        for kind in ("plots", "metrics"):
            for entry in dvc["stages"][stage].get(kind, []):
                assert isinstance(entry, str), f"{stage}: {entry} is not cached"
    assert "/reports/" in (REPO / ".gitignore").read_text().splitlines()
    plots = {next(iter(p)): next(iter(p.values())) for p in dvc["plots"]}
    curves = str(plot_data.curves_dir(paths).relative_to(REPO))
    drawn = plots[curves]
    assert (drawn["template"], drawn["x"], drawn["y"]) == (
        "linear",
        "epoch",
        ["val_score", "train_loss"],
    )
    assert plot_data.CURVE_COLUMNS == ("epoch", "val_score", "train_loss")
    mean = plots[str(plot_data.mean_curve_file(paths).relative_to(REPO))]
    assert (mean["x"], mean["y"]) == ("epoch", ["val_score", "train_loss"])
    confusion = plots[str(plot_data.confusion_dir(paths).relative_to(REPO))]
    assert confusion["template"] == "confusion"
    assert {confusion["x"], confusion["y"]} == set(plot_data.CONFUSION_COLUMNS)
    affinity = plots[str(plot_data.affinity_dir(paths).relative_to(REPO))]
    assert affinity["template"] == "bar_horizontal"
    assert (affinity["y"], affinity["x"]) == plot_data.AFFINITY_COLUMNS


@pytest.mark.slow
def test_dvc_plots_diff_draws_each_task_for_two_experiments(tmp_path):
    project = copy_project(tmp_path / "project")
    shutil.copy2(REPO / ".gitignore", project / ".gitignore")  # reports/ ignored, as shipped
    for cmd in (["git", "add", ".gitignore"], ["git", *GIT_USER, "commit", "-qm", "ignore"]):
        assert run(cmd, project).returncode == 0
    for name, epochs in (("two-epochs", 2), ("three-epochs", 3)):
        # up to evaluate, which writes the last plot data (register adds none)
        exp = ["dvc", "exp", "run", "evaluate", "-n", name, "-S", f"train.epochs={epochs}"]
        ran = run(exp, project)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

    paths = ProjectPaths(project)
    tasks = list(yaml.safe_load((project / "params.yaml").read_text())["tasks"])
    for task in tasks:  # the workspace holds the last experiment's files
        rows = read_csv(plot_data.curves_dir(paths) / f"{task}.csv")
        assert [r["epoch"] for r in rows] == ["1", "2", "3"]
        assert all(float(r["train_loss"]) > 0 and r["val_score"] for r in rows)
    test_labels = np.load(paths.split_dir("test") / "labels.npy")
    for t, task in enumerate(tasks):  # the defect ratings: all ordinal, all discrete
        rows = read_csv(plot_data.confusion_dir(paths) / f"{task}.csv")
        assert len(rows) == int((~np.isnan(test_labels[:, t])).sum()) > 0
        assert {r["actual"] for r in rows} <= {str(k) for k in range(6)}
    for task in tasks:  # measured (params: enabled)
        affinity = read_csv(plot_data.affinity_dir(paths) / f"{task}.csv")
        assert sorted(r["target"] for r in affinity) == sorted(set(tasks) - {task})

    diff = run(["dvc", "plots", "diff", "two-epochs", "three-epochs", "--json"], project)
    assert diff.returncode == 0, diff.stderr
    shown = json.loads(diff.stdout)
    data = shown["data"]
    assert shown.get("errors", []) == []  # the PNGs too: every experiment has its own
    for task in tasks:
        (curve,) = data[f"reports/plots/data/learning_curves/{task}.csv"]
        assert curve["revisions"] == ["two-epochs", "three-epochs"]
        values = curve["content"]["data"]["values"]
        epochs = {
            rev: {v["epoch"] for v in values if v["rev"] == rev} for rev in curve["revisions"]
        }
        assert epochs == {"two-epochs": {"1", "2"}, "three-epochs": {"1", "2", "3"}}
        assert {v["field"] for v in values} == {"val_score", "train_loss"}
        (matrix,) = data[f"reports/plots/data/confusion/{task}.csv"]
        assert matrix["revisions"] == ["two-epochs", "three-epochs"]
        (bars,) = data[f"reports/plots/data/affinity/{task}.csv"]
        assert len(bars["content"]["data"]["values"]) == 2 * (len(tasks) - 1)

    html = run(["dvc", "plots", "diff", "two-epochs", "three-epochs", "-o", "dvc_plots"], project)
    assert html.returncode == 0, html.stderr
    page = (project / "dvc_plots" / "index.html").read_text()
    assert all(f"learning_curves/{task}.csv" in page for task in tasks)
    assert "three-epochs" in page and "vega" in page

    metrics = run(["dvc", "metrics", "diff", "two-epochs", "three-epochs", "--json"], project)
    assert metrics.returncode == 0, metrics.stderr
    assert "summary.mean_score" in json.loads(metrics.stdout)["reports/metrics.json"]
