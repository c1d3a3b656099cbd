"""`mtlflow baselines` on a table (examples/penguins, shrunk): gradient-boosted trees per task
beside the single-task networks, then Δm against them in evaluate (metrics.json, the training
run, the printed table and the diagnosis)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mlflow import MlflowClient

from pipelines import stages
from pipelines.config import Params, parse_params
from pipelines.files import ProjectPaths
from tests.pipelines.orchestration.test_examples import shrunk

pytestmark = pytest.mark.slow

TASKS = ["species", "sex", "island", "body_mass_g"]


@dataclass
class Penguins:
    params: Params
    paths: ProjectPaths
    baselines: dict[str, Any]
    run_info: dict[str, Any]
    metrics: dict[str, Any]
    printed: str


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Penguins]:
    root = tmp_path_factory.mktemp("penguins-gbm")
    raw = shrunk(
        "penguins",
        root,
        train={"epochs": 4, "patience": None, "affinity": {"enabled": False}},
        tune={"enabled": False},
        baselines={"enabled": True},
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        params, paths = parse_params(raw, source="penguins"), ProjectPaths(root)
        stages.prepare(params, paths)
        stages.split(params, paths)
        report = stages.baselines(params, paths)
        run_info = stages.train(params, paths)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            metrics = stages.evaluate(params, paths)
        yield Penguins(params, paths, report, run_info, metrics, printed.getvalue())


def test_baselines_json_has_a_tree_model_per_task_beside_the_networks(penguins):
    report = penguins.baselines
    assert list(report["tasks"]) == TASKS  # the networks' block, as before
    boosted = report["gradient_boosting"]
    assert boosted["enabled"] is True and list(boosted["tasks"]) == TASKS
    assert json.loads(penguins.paths.baselines_file.read_text()) == report
    for name, entry in boosted["tasks"].items():
        kind = penguins.params.tasks[name].kind
        assert entry["model"] == (
            "HistGradientBoostingRegressor"
            if kind == "regression"
            else "HistGradientBoostingClassifier"
        )
        assert entry["metric"] == ("r2" if kind == "regression" else "balanced_accuracy")
        assert entry["score"] == entry["test"]["score"]
        assert entry["early_stopping"] is True
    # 11 penguins have no sex: the tree model is scored on the labelled test rows only
    assert boosted["tasks"]["sex"]["test"]["n"] < boosted["tasks"]["species"]["test"]["n"]
    # the trees separate the species from four measurements
    assert boosted["tasks"]["species"]["score"] > 0.9


def test_each_tree_model_has_a_nested_run_under_the_baselines_parent(penguins):
    client = MlflowClient(penguins.params.tracking.uri)
    parent = client.get_run(penguins.baselines["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' "
        "and tags.`mtlflow.baseline` = 'gradient_boosting'",
    )
    entries = penguins.baselines["gradient_boosting"]["tasks"]
    assert sorted(r.data.tags["mtlflow.task"] for r in children) == sorted(TASKS)
    for child in children:
        task = child.data.tags["mtlflow.task"]
        metric = entries[task]["metric"]
        assert child.info.run_id == entries[task]["run_id"]
        assert child.data.metrics[f"test/{task}/{metric}"] == pytest.approx(entries[task]["score"])
        assert parent.data.metrics[f"gradient_boosting/{task}/score"] == pytest.approx(
            entries[task]["score"]
        )
    networks = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' "
        "and tags.`mtlflow.baseline` = 'network'",
    )
    assert len(networks) == len(TASKS)


def test_evaluate_reports_delta_m_against_the_trees_as_the_formula_gives(penguins):
    block = penguins.metrics["gradient_boosting"]
    assert json.loads(penguins.paths.metrics_file.read_text())["gradient_boosting"] == block
    trees = {t: e["score"] for t, e in penguins.baselines["gradient_boosting"]["tasks"].items()}
    multi = {t: m["score"] for t, m in penguins.metrics["tasks"].items()}
    compared = [t for t in TASKS if trees[t] > 0]
    assert compared == TASKS  # every tree model learns something on penguins
    gains = {t: (multi[t] - trees[t]) / trees[t] for t in compared}
    assert block["delta_m"] == pytest.approx(sum(gains.values()) / len(gains))
    for task in compared:
        row = block["tasks"][task]
        assert (row["multi_task"], row["single_task"]) == (multi[task], trees[task])
        assert row["gain"] == pytest.approx(gains[task])
    assert "delta_m" in penguins.metrics["baselines"]  # the networks' Δm stays beside it

    run = MlflowClient(penguins.params.tracking.uri).get_run(penguins.run_info["run_id"])
    assert run.data.metrics["test/delta_m_gradient_boosting"] == pytest.approx(block["delta_m"])
    description = run.data.tags["mlflow.note.content"]
    assert f"Δm against gradient-boosted trees (one per task): {block['delta_m']:+.2%}." in (
        description
    )
    for task in compared:
        assert run.data.metrics[f"test/{task}/gradient_boosting_score"] == pytest.approx(
            trees[task]
        )
        assert run.data.metrics[f"test/{task}/gain_gradient_boosting"] == pytest.approx(gains[task])


def test_the_printed_table_and_the_diagnosis_show_both_delta_m(penguins):
    delta = penguins.metrics["gradient_boosting"]["delta_m"]
    assert f"Δm against gradient boosting = {delta:+.2%} over 4 tasks" in penguins.printed
    assert "gradient-boosted" in penguins.printed
    text = penguins.paths.diagnosis_file.read_text()
    assert f"**Δm = {delta:+.2%}** against gradient-boosted trees" in text
    assert f"**Δm = {penguins.metrics['baselines']['delta_m']:+.2%}** against single-task" in text
