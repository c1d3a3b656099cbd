"""The stages end to end against a real SQLite MLflow store (one shared tiny run)."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipelines import stages
from pipelines.config import load_params
from pipelines.data.splits import load_split
from pipelines.files import write_json
from pipelines.serving import IMAGE_COLUMN, Predictor, encode_png

pytestmark = pytest.mark.slow

TASKS = [
    f"{d}_{r}" for d in ("scratches", "pits", "corrosion") for r in ("left", "center", "right")
]


def client_for(run) -> MlflowClient:
    mlflow.set_tracking_uri(run.tracking_uri)
    return MlflowClient(run.tracking_uri)


def test_metrics_json_follows_the_design_schema(pipeline_run):
    metrics = json.loads(pipeline_run.paths.metrics_file.read_text())
    assert list(metrics["tasks"]) == TASKS
    for m in metrics["tasks"].values():
        assert m["kind"] == "ordinal"
        assert {"score", "collapsed", "majority_baseline", "qwk", "mae", "accuracy"} <= set(m)
        assert m["score"] == m["qwk"]
        assert isinstance(m["collapsed"], bool)
    summary = metrics["summary"]
    assert summary["mean_score"] == pytest.approx(
        np.mean([m["score"] for m in metrics["tasks"].values()])
    )
    assert set(summary["collapsed_tasks"]) == {
        t for t, m in metrics["tasks"].items() if m["collapsed"]
    }


def test_training_run_records_params_epochs_datasets_plots_and_test_metrics(pipeline_run):
    client = client_for(pipeline_run)
    run = client.get_run(pipeline_run.run_info["run_id"])
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["model.backbone.width"] == "8"
    history = client.get_metric_history(run.info.run_id, "val/pits_left/qwk")
    assert [m.step for m in history] == [1, 2]
    for key in ("train/loss", "train/corrosion_right/loss", "val/score", "weights/pits_center"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key
    assert client.get_metric_history(run.info.run_id, "weights/pits_center")[0].value == 1.0
    assert run.data.metrics["test/score"] == pytest.approx(
        pipeline_run.metrics["summary"]["mean_score"]
    )
    assert "test/scratches_left/qwk" in run.data.metrics
    contexts = {
        d.dataset.name: {t.value for t in d.tags if t.key == "mlflow.data.context"}
        for d in run.inputs.dataset_inputs
    }
    assert contexts == {"train": {"training"}, "val": {"validation"}, "test": {"testing"}}
    assert run.data.tags["data.split_sha256"]
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {
        "plots/learning_curves.png",
        "plots/confusion_matrices.png",
        "plots/augmentation_preview.png",
        "plots/affinity.png",  # train.affinity is on in the shipped params
        "plots/affinity_over_epochs.png",
        "plots/affinity",  # one heatmap per epoch
    }


def test_training_run_reports_the_resolved_augmentation_policy(pipeline_run, tmp_path):
    report = json.loads((pipeline_run.paths.reports_dir / "augmentation.json").read_text())
    kept = {d["name"]: d for d in report["kept"]}
    assert report["enabled"] is True
    assert kept["HorizontalFlip"]["remap"]["pits_left"] == "pits_right"
    excluded = {d["name"]: d["reason"] for d in report["excluded"]}
    assert "rot90 changes the labels of all 9 tasks" in excluded["RandomRotate90"]
    assert (pipeline_run.paths.plots_dir / "augmentation_preview.png").stat().st_size > 10_000
    client = client_for(pipeline_run)
    run_id = pipeline_run.run_info["run_id"]
    logged = client.download_artifacts(run_id, "augmentation.json", dst_path=str(tmp_path))
    assert json.loads(Path(logged).read_text()) == report
    tags = client.get_run(run_id).data.tags
    assert (tags["mtlflow.augment_kept"], tags["mtlflow.augment_excluded"]) == (
        str(len(kept)),
        str(len(excluded)),
    )


def test_the_experiment_opens_as_model_training_and_links_ask_for_that_view(pipeline_run):
    """MLflow 3's UI shows an untagged experiment in its GenAI view (traces, tokens)."""
    from pipelines import tracking

    client = client_for(pipeline_run)
    run = client.get_run(pipeline_run.run_info["run_id"])
    tags = client.get_experiment(run.info.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    url = tracking.run_url(pipeline_run.params, run.info.run_id)
    assert url.endswith(f"/runs/{run.info.run_id}?workflowType=machine_learning")


def test_the_training_run_is_named_and_described_for_a_runs_table(pipeline_run):
    """Name: what trained on which split; description (markdown): the per-task test table,
    then the registry decision."""
    client = client_for(pipeline_run)
    run = client.get_run(pipeline_run.run_info["run_id"])
    params = pipeline_run.params
    assert run.info.run_name.startswith(
        f"train {params.train.weighting.method} {params.model.backbone.name} "
        f"{params.model.architecture.name} split-"
    )
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("## Test metrics")
    for task, m in pipeline_run.metrics["tasks"].items():
        assert f"| {task} | {m['kind']} | {m['score']:.3f} | " in note
    decision = pipeline_run.decision
    assert note.index("## Test metrics") < note.index("## Registry")
    assert f"`{decision['model_name']}` [version {decision['version']}]" in note


def test_pyfunc_predictions_match_the_checkpoint_after_save_and_load(pipeline_run):
    tasks = pipeline_run.params.task_specs()
    images = load_split(pipeline_run.paths, "test", tasks)[0]["image"]
    direct = Predictor.from_dir(pipeline_run.paths.models_dir).predict_images(images)
    mlflow.set_tracking_uri(pipeline_run.tracking_uri)
    loaded = mlflow.pyfunc.load_model(pipeline_run.run_info["model_uri"])
    served = loaded.predict(pd.DataFrame({IMAGE_COLUMN: [encode_png(img) for img in images]}))
    assert list(served.columns) == [c for t in TASKS for c in (t, f"{t}_proba")]
    pd.testing.assert_frame_equal(served, direct)
    proba = np.array(served["pits_left_proba"].tolist())
    assert proba.shape == (len(images), 6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_pyfunc_reports_bad_rows_as_invalid_parameter(pipeline_run):
    mlflow.set_tracking_uri(pipeline_run.tracking_uri)
    model = mlflow.pyfunc.load_model(pipeline_run.run_info["model_uri"])
    good = encode_png(np.zeros((32, 32), np.uint8))
    with pytest.raises(mlflow.exceptions.MlflowException) as err:
        model.predict(pd.DataFrame({IMAGE_COLUMN: [good, "%%%not-base64"]}))
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "row 1" in err.value.message and "not valid base64" in err.value.message


def test_champion_alias_moves_only_for_a_better_model(pipeline_run):
    params, paths = pipeline_run.params, pipeline_run.paths
    client = client_for(pipeline_run)
    name = params.registry.model_name
    assert pipeline_run.decision["promoted"] is True
    first = client.get_model_version_by_alias(name, "champion")
    assert int(first.version) == pipeline_run.decision["version"]

    metrics = json.loads(paths.metrics_file.read_text())
    original = metrics["summary"]["mean_score"]
    try:
        metrics["summary"]["mean_score"] = original - 0.5
        write_json(paths.metrics_file, metrics)
        worse = stages.register(params, paths)
        assert worse["promoted"] is False
        assert client.get_model_version_by_alias(name, "champion").version == first.version

        metrics["summary"]["mean_score"] = original + 0.5
        write_json(paths.metrics_file, metrics)
        better = stages.register(params, paths)
        assert better["promoted"] is True
        assert client.get_model_version_by_alias(name, "champion").version == better["version"]
        assert better["previous_champion_version"] == int(first.version)
    finally:
        metrics["summary"]["mean_score"] = original
        write_json(paths.metrics_file, metrics)


def test_gradient_method_logs_weights_gradient_cosines_and_heatmap(project):
    _, paths = project
    params = load_params(paths.root / "params.yaml", ["train.weighting.method=upgrad"])
    stages.prepare(params, paths)
    stages.split(params, paths)
    run_info = stages.train(params, paths)
    client = MlflowClient(params.tracking.uri)
    run = client.get_run(run_info["run_id"])
    assert run.data.params["train.weighting.method"] == "upgrad"
    # one summary per task in the chart view (the task's mean cosine with the others), the
    # pairs in a table: 72 pair charts would bury the scores
    cosine_keys = sorted(k for k in run.data.metrics if "cosine" in k)
    assert cosine_keys == sorted(f"train/{t}/grad_cosine" for t in TASKS)
    history = client.get_metric_history(run.info.run_id, "train/pits_left/grad_cosine")
    assert [m.step for m in history] == [1, 2]
    assert all(-1.0 <= m.value <= 1.0 for m in history)
    table = json.loads(
        Path(
            client.download_artifacts(
                run.info.run_id, "tables/gradient_cosine.json", str(paths.root)
            )
        ).read_text()
    )
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert len(rows) == 2 * 9 * 8  # every ordered pair, every epoch
    last = [r["value"] for r in rows if r["epoch"] == 2 and r["target"] == "pits_left"]
    assert history[-1].value == pytest.approx(sum(last) / len(last), abs=1e-6)
    weights = [run.data.metrics[f"weights/{t}"] for t in TASKS]
    assert all(w > 0 for w in weights) and len(set(weights)) > 1  # UPGrad reweights tasks
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/gradient_cosine.png" in plots


def test_every_score_sits_in_the_first_chart_section_beside_the_mean(pipeline_run):
    """The chart view makes a section per key up to its last `/`, alphabetically: the
    per-task scores are also logged as `test/score_<task>`, `val/score_<task>`, beside the
    mean, so the first sections hold every score (the per-task detail comes after)."""
    client = MlflowClient(pipeline_run.tracking_uri)
    metrics = client.get_run(pipeline_run.run_info["run_id"]).data.metrics
    for task, scored in pipeline_run.metrics["tasks"].items():
        assert metrics[f"test/score_{task}"] == pytest.approx(scored["score"])
        assert metrics[f"test/score_{task}"] == metrics[f"test/{task}/score"]
        assert metrics[f"val/score_{task}"] == metrics[f"val/{task}/score"]
    sections = sorted({key.rpartition("/")[0] for key in metrics if "/" in key})
    assert sections[0] == "test"
    assert not any(key.startswith(("affinity/", "grad_cosine/", "augment/")) for key in metrics)
